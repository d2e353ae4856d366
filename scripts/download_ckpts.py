#!/usr/bin/env python
"""Download the paper's released Flan-XLM-R models and convert them into plugin checkpoints (SPEC §9.4).

    bash scripts/download_ckpts.sh [--sizes base large xl xxl] [--out ckpts] [--cache-dir cache]

For each size, from the HF model repo ``yegcjs/diffusion_llm``: the parts
``flan_v2.{size}.length/flan_v2.{size}.length.tar.gz.part{i}`` (base 1, large 1, xl 3, xxl 6) are
fetched in order and joined, the archive is unpacked into ``OUT/flan_v2.{size}.length/`` (the official
folder: ``args.json`` + ``checkpoint-<step>/``) and converted into ``OUT/flan-xlmr-{size}/``
(``checkpoint.pt``, ``dict.txt``, ``sentencepiece.bpe.model``), which ``eval_instruct.sh --ckpt``,
``fairseq-generate --path`` and ``DiffusionLM.from_pretrained`` take.

The official ``download_ckpts.sh`` has defects fixed here: the host is misspelled
(``hugggingface.co``), every size is fetched from the *base* folder, the XL parts are joined in the
order 0, 2, 1, the XXL archive is unpacked as ``...legnth.tar.gz`` and removed with ``rm rm``.
Parts and archives already there are kept (an interrupted run resumes; a partial download is a
``.part`` file until complete); ``--keep-archives`` keeps the joined archive after unpacking.

The converter needs the backbone's ``sentencepiece.bpe.model``: from the release if it holds one,
else ``--tokenizer DIR`` or ``facebook/xlm-roberta-{size}`` in the HF cache ``--cache-dir``.
"""
import argparse
import logging
import sys
from pathlib import Path

from fairseq_dlm.convert.release_download import BASE_URL, PARTS, download_archive, unpack_release
from fairseq_dlm.errors import PrepareError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", choices=list(PARTS), default=list(PARTS), help="which models (default: all four)")
    p.add_argument("--out", type=Path, default=Path("ckpts"), help="folder for the downloads and conversions")
    p.add_argument("--base-url", default=BASE_URL, help="the model repo (an http(s):// or file:// URL)")
    p.add_argument("--tokenizer", default=None, help="folder with the backbone's sentencepiece.bpe.model")
    p.add_argument("--cache-dir", "--cache_dir", default=None,
                   help="HF cache with facebook/xlm-roberta-{size} (its tokenizer), as the training scripts' --cache_dir")
    p.add_argument("--no-convert", action="store_true", help="download and unpack only")
    p.add_argument("--keep-archives", action="store_true", help="keep the joined .tar.gz after unpacking")
    a = p.parse_args(argv)
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", level=logging.INFO)
    a.out.mkdir(parents=True, exist_ok=True)
    done = []
    try:
        for size in a.sizes:
            release = a.out / f"flan_v2.{size}.length"
            if not (release / "args.json").is_file():
                archive = download_archive(size, a.base_url.rstrip("/"), a.out)
                release = unpack_release(archive, size, a.out)
                if not a.keep_archives:
                    archive.unlink()
            if a.no_convert:
                done.append(str(release))
                continue
            from fairseq_dlm.convert.official import convert_official

            target = a.out / f"flan-xlmr-{size}"
            convert_official(str(release), str(target), tokenizer=a.tokenizer, cache_dir=a.cache_dir, overwrite=True)
            done.append(str(target))
    except (PrepareError, FileNotFoundError, ValueError) as e:
        print(f"download_ckpts: error: {e}", file=sys.stderr)
        return 1
    for path in done:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
