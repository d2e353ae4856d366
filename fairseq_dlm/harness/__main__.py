"""``python -m fairseq_dlm.harness --model fairseq_dlm --model_args path=CKPT --tasks ...``: lm-eval's
command line, with this package's model registered first."""
from . import model  # noqa: F401  (registers "fairseq_dlm" with lm-eval)


def main() -> None:
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()
