from setuptools import find_packages, setup

setup(
    name="fairseq_dlm",
    version="0.1.0",
    description="Diffusion language models from pretrained XLM-R, as a fairseq plugin",
    packages=find_packages(include=["fairseq_dlm", "fairseq_dlm.*"]),
    package_data={"fairseq_dlm.demo": ["page.html"], "fairseq_dlm.harness.tasks": ["*.yaml", "_*_yaml"]},
    entry_points={"console_scripts": ["fairseq-dlm-demo=fairseq_dlm.demo.cli:main"]},
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
        "starlette>=0.40",
        "uvicorn>=0.30",
    ],
    extras_require={"fsdp": ["fairscale==0.4.13"], "test": ["pytest", "pytest-timeout", "selenium>=4.20"], "benchmarks": ["matplotlib"],
                    "harness": ["lm-eval>=0.4.9,<0.5"], "lora": ["peft>=0.17"]},
)
