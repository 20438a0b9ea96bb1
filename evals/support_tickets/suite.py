"""A support-ticket workflow with an approval gate, as an eval. Refunds over $100 wait for a human;
headless, the variant's policy decides (approve, or reject with the on_reject route)."""

from __future__ import annotations

from typing import Any

import wfkit as wf


def build(threshold: float = 100.0) -> wf.Workflow:
    flow = wf.Workflow("support-tickets")
    llm = wf.llm.ChatClient(
        transport=wf.llm.SimulatedModel(
            p50=0.002,
            p99=0.01,
            seed=1,
            reply={
                r"refund": "Your refund has been processed.",
                r"password|login": "Use the reset link we just sent you.",
                r"crash|error": "We logged the bug and will follow up.",
            },
        )
    )

    @flow.step
    def triage(state: Any) -> dict[str, Any]:
        text = state["text"].lower()
        kind = "refund" if "refund" in text else "account" if ("password" in text or "login" in text) else "technical"
        return {"kind": kind}

    @flow.step(
        approval=wf.Approval(
            "Refunds above the threshold need a human",
            payload=["amount", "text"],
            when=wf.when("amount", "gt", threshold),
            on_reject="decline",
        ),
        irreversible=True,
    )
    def refund(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        return {"resolution": "refunded", "refund_key": ctx.idempotency_key}

    @flow.step
    def decline(state: Any) -> dict[str, Any]:
        return {"resolution": "declined"}

    @flow.step
    def self_service(state: Any) -> dict[str, Any]:
        return {"resolution": "self_service"}

    @flow.step
    def escalate(state: Any) -> dict[str, Any]:
        return {"resolution": "escalated"}

    @flow.step
    async def reply(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        answer = await llm.for_step(ctx).complete(f"Reply to: {state['text']} (resolution: {state['resolution']})")
        return {"reply": answer.text}

    flow.route(
        "triage",
        wf.when("kind", "eq", "refund") >> wf.go("refund"),
        wf.when("kind", "eq", "account") >> wf.go("self_service"),
        default=wf.go("escalate"),
    )
    for step in ("refund", "decline", "self_service", "escalate"):
        flow.edge(step, "reply")
    return flow


suite = wf.evals.Suite(
    name="support-tickets",
    dataset="dataset.jsonl",
    workflow=build,
    variants={"approve": {"run_options": {"policy": "approve"}}, "reject": {"run_options": {"policy": "reject"}}},
    scorers=[
        wf.evals.route_taken(),
        wf.evals.exact_match("resolution"),
        wf.evals.latency_budget(2.0),
        wf.evals.llm_judge(
            "Is the reply polite and does it address the customer's issue?", field="reply", reference_key="reply"
        ),
    ],
    thresholds={"route_taken": 0.75, "llm_judge": 0.9},
)
