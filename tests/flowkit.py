"""What tests/flow.py plays besides the functions: the device (its key, its signed requests),
the RP's JOSE (client assertions), the clients' notification endpoints, and the event sources
(a stream filter, moto's record of pushes): each a part AWS, a phone or an RP would be.
"""
import base64
import http.server
import json
import os
import secrets
import socketserver
import subprocess
import threading
import time
import urllib.parse

import boto3
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

REGION = "us-east-1"


class StepFailed(Exception):
    pass


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def basic(client_id, secret):
    return "Basic " + base64.b64encode(f"{urllib.parse.quote(client_id, safe='')}:{urllib.parse.quote(secret, safe='')}".encode()).decode()


def client_assertion(client_id, kid, key, audience):
    """A private_key_jwt client assertion (RFC 7523) signed ES256 with the client's key."""
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": audience, "iat": now, "exp": now + 60,
              "jti": secrets.token_urlsafe(16)}
    return es256({"alg": "ES256", "typ": "JWT", "kid": kid}, claims, key)


def es256(header, claims, key):
    signing_input = f"{b64url(jcs(header))}.{b64url(jcs(claims))}".encode()
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return f"{signing_input.decode()}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def jcs(value):
    """RFC 8785 for what `shown` holds (ASCII member names, integers, strings)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class Device:
    """An authentication device: its P-256 key signs what it fetches and decides."""

    def __init__(self, device_id, key):
        self.device_id = device_id
        self.key = key

    @classmethod
    def from_pem(cls, device_id, path):
        with open(path, "rb") as f:
            return cls(device_id, serialization.load_pem_private_key(f.read(), None))

    def public_jwk(self):
        numbers = self.key.public_key().public_numbers()
        return {"kty": "EC", "crv": "P-256", "x": b64url(numbers.x.to_bytes(32, "big")),
                "y": b64url(numbers.y.to_bytes(32, "big"))}

    def jws(self, claims):
        now = int(time.time())
        claims = dict(claims, iat=now, exp=now + 120, jti=secrets.token_urlsafe(16))
        return es256({"alg": "ES256", "typ": "JWT", "kid": self.device_id}, claims, self.key)


class Callbacks:
    """The clients' notification endpoints: records every POST, answers 204 (503 under /down)."""

    def __init__(self):
        self.received = []
        self.lock = threading.Condition()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with owner.lock:
                    owner.received.append({"path": self.path, "body": body,
                                           "headers": {k.lower(): v for k, v in self.headers.items()}})
                    owner.lock.notify_all()
                # A client whose endpoint is down answers 503 to every notification.
                self.send_response(503 if self.path.startswith("/down") else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def wait(self, path, count, timeout=30):
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                got = [r for r in self.received if r["path"] == path]
                if len(got) >= count:
                    return got[count - 1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StepFailed(f"no callback {count} on {path} within {timeout} s")
                self.lock.wait(left)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def aws(service):
    endpoint = os.environ["CIBA_DYNAMODB_ENDPOINT"] if service == "dynamodb" else os.environ["CIBA_SNS_ENDPOINT"]
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id="local", aws_secret_access_key="local")


def find_arn(value, arn):
    if isinstance(value, dict):
        if value.get("arn") == arn:
            return value
        values = value.values()
    elif isinstance(value, list):
        values = value
    else:
        return None
    for v in values:
        found = find_arn(v, arn)
        if found is not None:
            return found
    return None


def find_endpoint_arns(token):
    sns = aws("sns")
    arns = []
    for app in sns.list_platform_applications().get("PlatformApplications", []):
        for endpoint in sns.list_endpoints_by_platform_application(
                PlatformApplicationArn=app["PlatformApplicationArn"]).get("Endpoints", []):
            if endpoint.get("Attributes", {}).get("Token") == token:
                arns.append(endpoint["EndpointArn"])
    return arns


def filter_matches(pattern, value):
    """An EventBridge-style event filter (what Lambda's FilterCriteria are): exact values and
    prefix matches in lists, nested objects."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(k in value and filter_matches(p, value[k]) for k, p in pattern.items())
    if isinstance(pattern, list):
        for option in pattern:
            if isinstance(option, dict) and "prefix" in option:
                if isinstance(value, str) and value.startswith(option["prefix"]):
                    return True
            elif option == value:
                return True
        return False
    return pattern == value


def run(command, env):
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise StepFailed(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return done.stdout
