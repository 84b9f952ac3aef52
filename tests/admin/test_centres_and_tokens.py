"""Operators manage centres and tokens over the API; submitters may not."""


def test_operator_adds_a_centre(client, tokens, db):
    response = client.post("/v1/centres/", json={"code": "TJH", "name": "Tianjin Hospital"},
                           headers=tokens.header("operator"))
    assert response.status_code == 201
    assert response.json["code"] == "TJH"
    audit = db.execute("SELECT action, entity FROM audit_events WHERE entity_id = %s AND entity = 'centre'",
                       (response.json["id"],)).fetchall()
    assert audit == [{"action": "create", "entity": "centre"}]


def test_duplicate_centre_code_is_409_naming_code(client, tokens):
    response = client.post("/v1/centres/", json={"code": "CENTRE-A", "name": "Again"},
                           headers=tokens.header("operator"))
    assert response.status_code == 409
    assert response.json["errors"][0]["field"] == "code"


def test_submitter_cannot_add_centres_or_tokens(client, tokens, db):
    before = db.execute("SELECT count(*) AS n FROM centres").fetchone()["n"]
    assert client.post("/v1/centres/", json={"code": "X1", "name": "X"},
                       headers=tokens.header("submitter_a")).status_code == 403
    assert client.post("/v1/tokens/", json={"centre_id": tokens.centre_a["id"], "role": "operator"},
                       headers=tokens.header("submitter_a")).status_code == 403
    assert db.execute("SELECT count(*) AS n FROM centres").fetchone()["n"] == before


def test_submitter_reads_its_own_centre_but_not_another(client, tokens):
    own = client.get(f"/v1/centres/{tokens.centre_a['id']}", headers=tokens.header("submitter_a"))
    other = client.get(f"/v1/centres/{tokens.centre_b['id']}", headers=tokens.header("submitter_a"))
    assert own.status_code == 200
    assert other.status_code == 404


def test_centre_list_pages_with_a_cursor(client, tokens):
    for number in range(3):
        client.post("/v1/centres/", json={"code": f"C{number}X", "name": f"Centre {number}"},
                    headers=tokens.header("operator"))
    first = client.get("/v1/centres/?limit=2", headers=tokens.header("operator")).json
    second = client.get(f"/v1/centres/?limit=2&cursor={first['next_cursor']}", headers=tokens.header("operator")).json
    third = client.get(f"/v1/centres/?limit=2&cursor={second['next_cursor']}", headers=tokens.header("operator")).json
    codes = [c["code"] for page in (first, second, third) for c in page["items"]]
    assert codes == ["CENTRE-A", "CENTRE-B", "C0X", "C1X", "C2X"]
    assert third["next_cursor"] is None


def test_forged_cursor_is_422(client, tokens):
    response = client.get("/v1/centres/?cursor=bm90LWEtY3Vyc29y", headers=tokens.header("operator"))
    assert response.status_code == 422
    assert response.json["errors"][0]["field"] == "cursor"


def test_issued_token_is_shown_once_and_works(client, tokens):
    issued = client.post("/v1/tokens/", json={"centre_id": tokens.centre_a["id"], "role": "submitter",
                                               "label": "HIS integration"}, headers=tokens.header("centre_admin_a"))
    assert issued.status_code == 201
    secret = issued.json["token"]
    assert client.get(f"/v1/centres/{tokens.centre_a['id']}",
                      headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    listed = client.get("/v1/tokens/", headers=tokens.header("centre_admin_a")).json["items"]
    assert all("token" not in row for row in listed)
    assert secret not in str(listed)


def test_token_for_unknown_centre_is_422(client, tokens):
    response = client.post("/v1/tokens/", json={"centre_id": 9999, "role": "analyst"}, headers=tokens.header("operator"))
    assert response.status_code == 422
    assert response.json["errors"][0]["field"] == "centre_id"


def test_revoked_token_is_refused(client, tokens):
    response = client.delete(f"/v1/tokens/{tokens.id('submitter_b')}", headers=tokens.header("operator"))
    assert response.status_code == 200
    assert response.json["revoked_at"]
    assert client.get(f"/v1/centres/{tokens.centre_b['id']}", headers=tokens.header("submitter_b")).status_code == 401


def test_token_list_filters_by_centre_role_and_revocation(client, tokens):
    client.delete(f"/v1/tokens/{tokens.id('submitter_b')}", headers=tokens.header("operator"))
    operator = tokens.header("operator")

    def labels(query):
        return sorted(row["label"] for row in client.get(f"/v1/tokens/?{query}", headers=operator).json["items"])

    assert labels(f"centre_id={tokens.centre_b['id']}") == ["submitter_b"]
    assert labels("role=submitter") == ["submitter_a", "submitter_b"]
    assert labels("revoked=true") == ["submitter_b"]
    assert labels("revoked=false&role=submitter") == ["submitter_a"]
