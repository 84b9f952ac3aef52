"""`registry demo`: load the demo registry through the same rules as the API."""

from registry.auth import ANALYST, SUBMITTER, Principal
from registry.centres import store as centres
from registry.demo.cases import LITERATURE_CENTRE, SEED_CENTRE, literature_cases, seed_case
from registry.follow_ups import store as follow_ups
from registry.follow_ups.schemas import FollowUpFieldsSchema
from registry.operations import service as operations
from registry.operations.schemas import OperationInputSchema
from registry.tokens import store as tokens


def _centre(conn, code: str, name: str) -> dict:
    return centres.get_centre_by_code(conn, code) or centres.add_centre(conn, code, name)


def _submit(conn, centre: dict, cases) -> list[str]:
    actor = Principal(token_id=None, role="cli", centre_id=centre["id"], centre_code=centre["code"])
    outcomes = []
    for document, follow_up_documents in cases:
        operation, outcome = operations.submit_operation(conn, actor, OperationInputSchema().load(document))
        outcomes.append(f"{centre['code']} {document['local_ref']}: {outcome}")
        for follow_up in follow_up_documents:
            follow_ups.save_follow_up(conn, actor, operation, FollowUpFieldsSchema().load(follow_up))
    return outcomes


DEMO_TOKEN_LABELS = {SUBMITTER: "demo submitter", ANALYST: "demo analyst"}


def _demo_token(conn, centre_id: int, role: str, renew: bool) -> str | None:
    """A new demo token of `role`, or None when one is already active and not to be renewed.

    Only a token's hash is stored, so an active demo token cannot be shown again: a rerun
    leaves it as it is (a rerun changes nothing), and `renew` revokes it for a fresh one.
    """
    label = DEMO_TOKEN_LABELS[role]
    active = [t for t in tokens.list_tokens(conn, filters={"centre_id": centre_id, "role": role, "revoked": False,
                                                           "expired": False})
              if t["label"] == label]
    if active and not renew:
        return None
    for token in active:
        tokens.revoke_token(conn, token["id"])
    return tokens.issue_token(conn, centre_id, role, label)[1]


def load_demo(conn, new_tokens: bool = False) -> dict:
    """Load (or refresh) the demo cases; return what happened and a submitter and an analyst token
    (None for a token issued by an earlier run, unless `new_tokens` replaces it)."""
    seed_centre = _centre(conn, *SEED_CENTRE)
    literature_centre = _centre(conn, *LITERATURE_CENTRE)
    outcomes = _submit(conn, seed_centre, [seed_case()]) + _submit(conn, literature_centre, literature_cases())
    return {"outcomes": outcomes,
            "submitter_token": _demo_token(conn, seed_centre["id"], SUBMITTER, new_tokens),
            "analyst_token": _demo_token(conn, seed_centre["id"], ANALYST, new_tokens),
            "submitter_centre": seed_centre["code"]}
