from setuptools import find_packages, setup

setup(
    name="fairseq_dlm",
    version="0.1.0",
    description="Diffusion language models from pretrained XLM-R, as a fairseq plugin",
    packages=find_packages(include=["fairseq_dlm", "fairseq_dlm.*"]),
    python_requires=">=3.10",
    install_requires=[
        "fairseq-fixed==0.12.3.1",
        "hydra-core==1.3.2",
        "omegaconf==2.3.0",
        "transformers>=4.57,<6",
        "sacrebleu>=2",
        "sentencepiece",
        "rouge-score",
        "scikit-learn",
        "protobuf",
    ],
    extras_require={"fsdp": ["fairscale==0.4.13"], "test": ["pytest", "pytest-timeout"], "benchmarks": ["matplotlib"]},
)
