"""The paper's scripts (``scripts/task_train.sh`` & co., SPEC §9.1) as fairseq commands.

Standard library only (no fairseq/torch import), so that a script answers ``--help`` and rejects a
bad flag at once:

* ``flags`` — each script's flags, ``--flag=value`` parsing, the paper README's typos;
* ``checkpoint_choice`` — ``--ckpt`` file or folder → the checkpoint to use;
* ``settings`` — ``--pretrained`` (directory or HF id in the local cache), ``--ds_config``,
  ``--extra``, the data folder's language pair;
* ``commands`` — the fairseq command each script runs.
"""
