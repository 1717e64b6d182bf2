"""A custom chute whose startup hook fails: it never turns ready, and says why."""

from chutes.chute import Chute
from pydantic import BaseModel

chute = Chute(username="tester", name="broken", image="parachutes/python:3.12")


class Question(BaseModel):
    text: str


@chute.on_startup()
def load(self):
    raise RuntimeError("no weights at /models/missing")


@chute.cord(public_api_path="/predict")
def predict(self, question: Question) -> dict:
    return {"answer": question.text}
