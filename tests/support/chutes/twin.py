"""A second custom chute with a cord at the same path as toolbox's `/echo`."""

from chutes.chute import Chute
from pydantic import BaseModel

chute = Chute(username="tester", name="twin", image="parachutes/python:3.12")


class Words(BaseModel):
    text: str


@chute.cord(public_api_path="/echo")
def echo(self, words: Words) -> dict:
    return {"twin": words.text}


@chute.cord(public_api_path="/twin_only")
def twin_only(self, words: Words) -> dict:
    return {"only": words.text}
