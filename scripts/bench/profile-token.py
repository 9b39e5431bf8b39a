"""Bench helper: sign in to the gateway through the real OIDC provider, make a profile of the
echo backend and a token for it, print the token. Usage: profile-token.py GATEWAY_BASE_URL"""

import sys
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "e2e"))
from oidc import login  # noqa: E402

base = sys.argv[1]
http = requests.Session()
assert login(http, f"{base}/api/auth/login", "bench").status_code == 302
csrf = {"X-CSRF-Token": http.get(f"{base}/api/me").json()["csrf_token"], "Origin": base}
profile = http.post(f"{base}/api/profiles", json={"name": "bench", "tools": ["echo/*"]}, headers=csrf)
profile.raise_for_status()
token = http.post(f"{base}/api/profiles/{profile.json()['id']}/tokens", json={"name": "bench"}, headers=csrf)
token.raise_for_status()
print(token.json()["token"])
