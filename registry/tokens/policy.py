"""Which tokens a token may issue, list and revoke.

Two roles manage tokens, and neither can reach a centre's patients through a token it issues:
- an operator runs the registry: it issues analyst, operator and metrics tokens (for any home
  centre: the centre only scopes their idempotency keys and audit entries), and lists and
  revokes every token (revoking reaches no data, and stops a leaked token at once);
- a centre_admin looks after one centre: it issues, lists and revokes that centre's submitter
  and centre_admin tokens.
A centre's first centre_admin token is issued from the command line (`registry tokens issue`),
by whoever runs the registry's server and so has its database anyway.

Rotation (issuing a token's successor) follows the same rule as issuing: a token that may issue
a token of that role for that centre may rotate it, with a fresh lifetime. Any token may also
rotate itself, so a hospital system can roll its own credential without a person, but it then
renews the secret, not the lifetime: the successor expires when the token would have. A
leaked token can thus rotate itself into a token its thief alone holds, yet live no longer than
a person approved (and the rotation is on record, issued by the token itself).
"""

from registry.auth import ANALYST, CENTRE_ADMIN, METRICS, OPERATOR, SUBMITTER, Principal
from registry.problems import Problem, field_error

ISSUES = {OPERATOR: (ANALYST, OPERATOR, METRICS), CENTRE_ADMIN: (SUBMITTER, CENTRE_ADMIN)}
MANAGERS = tuple(ISSUES)


def scope(principal: Principal) -> dict:
    """The tokens `principal` may list and revoke: filters for the token store (None: any)."""
    if principal.role == OPERATOR:
        return {"centre_id": None, "roles": None}
    return {"centre_id": principal.centre_id, "roles": list(ISSUES[principal.role])}


def may_issue(principal: Principal, centre_id: int, role: str) -> bool:
    """Whether `principal` may issue (and so rotate, with a fresh lifetime) a `role` token for `centre_id`."""
    return (role in ISSUES.get(principal.role, ())
            and (principal.role != CENTRE_ADMIN or centre_id == principal.centre_id))


def check_may_issue(principal: Principal, centre_id: int, role: str) -> None:
    """403 naming the field when `principal` may not issue a `role` token for `centre_id`."""
    if role not in ISSUES[principal.role]:
        raise Problem(403, f"A {principal.role} token issues only {', '.join(ISSUES[principal.role])} tokens.",
                      slug="forbidden", errors=[field_error("role", _why_not(principal.role, role))])
    if principal.role == CENTRE_ADMIN and centre_id != principal.centre_id:
        raise Problem(403, "A centre_admin token issues tokens of its own centre only.", slug="forbidden",
                      errors=[field_error("centre_id", "Not your centre.")])


def _why_not(issuer: str, role: str) -> str:
    if issuer == OPERATOR and role in (SUBMITTER, CENTRE_ADMIN):
        return ("Reaches a centre's patients: the centre's own centre_admin issues it "
                "(its first centre_admin token comes from the command line).")
    return f"Not a role a {issuer} token issues."
