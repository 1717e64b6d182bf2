"""rerank and score (cross-encoder routes, as vLLM serves them)."""

from __future__ import annotations

from runtime.conformance.check import Check, Session, conforms, expect
from runtime.protocol.rerank import RerankResponse, ScoreResponse

QUERY = "What is the capital of France?"
DOCUMENTS = ["Paris is the capital of France.", "The sea is wide.", "Numbers: 1 2 3."]


def _rerank(session: Session, **fields: object) -> RerankResponse:
    body = {"model": session.rerank_model(), "query": QUERY, "documents": DOCUMENTS, **fields}
    reply = session.request("POST", "/v1/rerank", body)
    expect(reply.status_code == 200, "200", f"{reply.status_code} {reply.text[:300]}")
    return conforms(RerankResponse, reply.json(), "a rerank reply")


def rerank(session: Session) -> str:
    ranked = _rerank(session).results
    expect(
        sorted(r.index for r in ranked) == [0, 1, 2],
        "every document once",
        [r.index for r in ranked],
    )
    scores = [r.relevance_score for r in ranked]
    expect(scores == sorted(scores, reverse=True), "best first", scores)
    top = _rerank(session, top_n=1).results
    expect(
        len(top) == 1 and top[0].index == ranked[0].index,
        "top_n 1: the best one",
        [r.index for r in top],
    )
    return " > ".join(str(r.index) for r in ranked)


def score(session: Session) -> str:
    body = {"model": session.rerank_model(), "text_1": QUERY, "text_2": DOCUMENTS}
    reply = session.request("POST", "/v1/score", body)
    expect(reply.status_code == 200, "200", f"{reply.status_code} {reply.text[:300]}")
    rows = conforms(ScoreResponse, reply.json(), "a score reply").data
    expect(
        [r.index for r in rows] == [0, 1, 2],
        "one score per pair, in order",
        [r.index for r in rows],
    )
    ranked = {r.index: r.relevance_score for r in _rerank(session).results}
    expect(
        all(abs(r.score - ranked[r.index]) < 1e-4 for r in rows),
        "the same scores rerank gives",
        [[r.score for r in rows], ranked],
    )
    return ", ".join(f"{r.score:.4f}" for r in rows)


CHECKS = [
    Check("rerank", "rerank", rerank, "documents best first; top_n honoured"),
    Check("rerank", "score", score, "one score per pair, equal to rerank's"),
]
