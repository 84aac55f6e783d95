#!/usr/bin/env python3
"""Whole CIBA flows across the separately running functions, as a deployment runs them.

    flow.py --signing kms|envelope --seed SEED --admin CIBA_ADMIN [--iam-log FILE] [rie.py options]

Each function of template.yaml that a flow touches runs as its own `sam build` artifact under
the official Lambda Runtime Interface Emulator (tests/rie.py; arm64 through qemu-user), with the
environment the template gives it, on one fresh DynamoDB Local table and moto (SNS, SQS, KMS,
Secrets Manager), and with --iam-log every AWS call held to the function's policy
(tests/iam.py). What API Gateway, the table's stream and the SQS event source would hand a
function is built here from what the table and the queue hold:

- poll (demo-rp): discovery, /bc-authorize, the push on moto's SNS, /device/transaction,
  /token pending, /device/decision, /token redeeming (then refused again), /jwks (the ID token
  checked against it), /userinfo, /introspect as the resource server, a refresh, /revoke of the
  first access token and of the refresh token's family, /introspect inactive after each, and the
  revoked family refused at /token;
- private_key_jwt (demo-fapi) at /introspect and /revoke, each assertion's jti spent once;
- limits: a wrong user_code then the right one (demo-pos), a denial, a user's pending requests
  from one client capped at 5 (the sixth 403 with no push) and room again once one is decided;
- enrolment: carol's new phone at /device/register (a new SNS platform endpoint), then the same
  push token enrolled again after SNS disabled its endpoint (re-enabled, same device);
- ping: a client registered at /register (initial access token), its approval, the stream
  record to the notifier (through the template's filter), the SQS message to the deliverer, the
  ping on a callback server here, then /token;
- push: the same, the deliverer minting the tokens and pushing them to the callback;
- an endpoint that answers 503: the first attempt leaves the message on the queue, the last
  (NotificationAttempts=2) parks it in the dead-letter queue with its reason;
- the scheduled expiry sweep.

The signing modes: `kms`, the ES256 key in moto's KMS (one Sign per token). moto signs a
MessageType=DIGEST request by hashing the digest once more, so there the ID token's signature
verifies over SHA-256 of the JWS input's SHA-256, and exactly that is checked. `envelope`, a key
made by `ciba-admin signing-key` and decrypted with KMS at cold start: the plain ES256 signature
is checked. Exit 0 when every step answered as documented; the failing step and the function's
log otherwise.

Environment: CIBA_DYNAMODB_ENDPOINT and CIBA_SNS_ENDPOINT (moto, every other service too), and
what tests/aws_setup.py printed (SNS_PLATFORM_APP_GCM, KMS_KEY_ID, SECRET_ARN_OpSecret).
"""
import argparse
import base64
import hashlib
import json
import os
import secrets
import sys
import time
import urllib.parse
import urllib.request

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

import rie
from flowkit import (REGION, Callbacks, Device, StepFailed, aws, b64url, basic, client_assertion,
                     filter_matches, find_arn, find_endpoint_arns, jcs, run, unb64url)

ROOT = rie.ROOT
FUNCTIONS = [
    "DiscoveryFunction", "JwksFunction", "RegisterFunction", "BcAuthorizeFunction", "TokenFunction",
    "UserinfoFunction", "IntrospectFunction", "RevokeFunction", "DeviceRegisterFunction",
    "DeviceTransactionFunction", "DeviceDecisionFunction", "NotifierFunction", "DelivererFunction",
    "ExpirySweeperFunction",
]
CIBA_GRANT = "urn:openid:params:grant-type:ciba"


class Flow:
    def __init__(self, options):
        self.options = options
        self.mode = options.signing
        self.run = f"flow-{self.mode}"
        self.emulators = {}
        self.callbacks = Callbacks()
        self.issuer = f"http://127.0.0.1:{self.callbacks.port}"
        self.host = f"127.0.0.1:{self.callbacks.port}"
        self.step = "setup"

    # ---- the deployment -------------------------------------------------------------------

    def prepare(self):
        """A fresh table with the seed and (envelope) a signing key; fresh queues; the
        parameters the template is deployed with."""
        stamp = f"{self.mode}-{int(time.time())}"
        os.environ["TABLE_NAME"] = self.table = f"flow-{stamp}"
        sqs = aws("sqs")
        for logical_id in ("NotificationQueue", "NotificationDeadLetterQueue"):
            url = sqs.create_queue(QueueName=f"ciba-flow-{stamp}-{logical_id}")["QueueUrl"]
            os.environ[f"SQS_QUEUE_URL_{logical_id}"] = url
        self.queue_url = os.environ["SQS_QUEUE_URL_NotificationQueue"]
        self.admin_env = env = dict(os.environ, AWS_ENDPOINT_URL_DYNAMODB=os.environ["CIBA_DYNAMODB_ENDPOINT"],
                   AWS_ENDPOINT_URL_SECRETS_MANAGER=os.environ["CIBA_SNS_ENDPOINT"],
                   AWS_ENDPOINT_URL_KMS=os.environ["CIBA_SNS_ENDPOINT"])
        run([self.options.admin, "import", "--seed", self.options.seed, "--table", self.table,
             "--op-secret-arn", os.environ["SECRET_ARN_OpSecret"]], env)
        self.registration_token = secrets.token_urlsafe(32)
        parameters = [
            f"IssuerUrl={self.issuer}",
            f"GcmPlatformApplicationArn={os.environ['SNS_PLATFORM_APP_GCM']}",
            "PollInterval=1",
            # A notification that keeps failing is parked after its second attempt.
            "NotificationAttempts=2",
            f"RegistrationTokenHashes={b64url(hashlib.sha256(self.registration_token.encode()).digest())}",
            f"SigningMode={self.mode}",
        ]
        if self.mode == "envelope":
            key = aws("kms").create_key(KeySpec="SYMMETRIC_DEFAULT", KeyUsage="ENCRYPT_DECRYPT",
                                        Description="ciba flow envelope key")["KeyMetadata"]["Arn"]
            os.environ["KMS_KEY_ID_EnvelopeSigningKey"] = key
            out = run([self.options.admin, "signing-key", "--kms-key-id", key, "--table", self.table], env)
            kid = out.strip().splitlines()[-1].split()[-1]
            parameters.append(f"EnvelopeSigningKids={kid}")
            self.kid = kid
        else:
            self.kid = None
        self.parameters = parameters + list(self.options.parameter_overrides or [])
        with open(self.options.seed) as f:
            seed = json.load(f)
        self.endpoints = {d["device_id"]: d["endpoint_arn"] for d in seed["devices"]}

    def start(self):
        namespace = argparse.Namespace(
            template=self.options.template, env_vars=None, parameter_overrides=self.parameters,
            native=False, bootstrap=None, build_dir=self.options.build_dir)
        for logical_id in FUNCTIONS:
            function = rie.load_function(namespace, logical_id)
            bootstrap, arch = rie.bootstrap_for(function, namespace)
            log_path = os.path.join(rie.logs_dir(), f"{self.run}-{logical_id}.log")
            self.emulators[logical_id] = rie.Emulator(function, bootstrap, arch, log_path)

    def stop(self):
        for emulator in self.emulators.values():
            emulator.stop()
        self.callbacks.stop()

    # ---- invoking -------------------------------------------------------------------------

    def invoke(self, logical_id, event):
        status, body, _ = self.emulators[logical_id].invoke(json.dumps(event).encode())
        if status != 200:
            raise StepFailed(f"{logical_id}: the emulator answered {status}: {body[:300]!r}")
        return json.loads(body)

    def http(self, logical_id, method, path, headers=None, body=None, form=None):
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers = dict(headers or {}, **{"content-type": "application/x-www-form-urlencoded"})
        headers = {k.lower(): v for k, v in (headers or {}).items()}
        headers.update({"host": self.host, "x-forwarded-proto": "http", "user-agent": "tests/flow.py"})
        now = time.time()
        event = {
            "version": "2.0",
            "routeKey": f"{method} {path}",
            "rawPath": path,
            "rawQueryString": "",
            "headers": headers,
            "requestContext": {
                "accountId": rie.PSEUDO["AWS::AccountId"], "apiId": "local", "domainName": "127.0.0.1",
                "domainPrefix": "127", "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                                                "sourceIp": "127.0.0.1", "userAgent": "tests/flow.py"},
                "requestId": secrets.token_urlsafe(12), "routeKey": f"{method} {path}", "stage": "$default",
                "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                "timeEpoch": int(now * 1000),
            },
            "isBase64Encoded": False,
        }
        if body is not None:
            event["body"] = body
        result = self.invoke(logical_id, event)
        status = result.get("statusCode")
        text = result.get("body") or ""
        if result.get("isBase64Encoded"):
            text = base64.b64decode(text).decode()
        try:
            data = json.loads(text) if text else None
        except ValueError:
            data = text
        return status, {k.lower(): v for k, v in (result.get("headers") or {}).items()}, data

    def expect(self, what, got, wanted_status, error=None):
        status, _, body = got
        ok = status == wanted_status and (error is None or (isinstance(body, dict) and body.get("error") == error))
        line = f"  {self.run}: {what}: {status}" + (f" {body.get('error')}" if isinstance(body, dict) and body.get("error") else "")
        print(line, flush=True)
        if not ok:
            raise StepFailed(f"{what}: answered {status} {body!r}, expected {wanted_status} {error or ''}")
        return body

    # ---- the steps ------------------------------------------------------------------------

    def pushes(self, endpoint_arn):
        with urllib.request.urlopen(f"{os.environ['CIBA_SNS_ENDPOINT']}/moto-api/data.json") as r:
            data = json.load(r)
        found = find_arn(data.get("sns"), endpoint_arn)
        if found is None:
            return []
        messages = found.get("messages") or {}
        return list(messages.values()) if isinstance(messages, dict) else list(messages)

    def start_request(self, auth, device_arn, form, what):
        before = len(self.pushes(device_arn))
        headers = {"authorization": auth} if auth else {}
        body = self.expect(f"POST /bc-authorize ({what})", self.http(
            "BcAuthorizeFunction", "POST", "/bc-authorize", headers, form=form), 200)
        pushed = self.pushes(device_arn)[before:]
        if len(pushed) != 1:
            raise StepFailed(f"{len(pushed)} pushes to {device_arn} after /bc-authorize, expected 1")
        message = json.loads(pushed[0])
        data = json.loads(message["GCM"])["data"]
        if data.get("type") != "ciba_auth_request" or data.get("binding_message") != form.get("binding_message"):
            raise StepFailed(f"the push is not this request's: {data}")
        print(f"  {self.run}: the push reached {device_arn.rsplit('/', 1)[-1]} on SNS (txn {data['txn'][:8]}…)")
        return body["auth_req_id"], body["interval"], data["txn"]

    def approve(self, device, txn, action="approve"):
        shown = self.expect("POST /device/transaction", self.http(
            "DeviceTransactionFunction", "POST", "/device/transaction", {"content-type": "application/jwt"},
            body=device.jws({"txn": txn})), 200)["shown"]
        txn_hash = b64url(hashlib.sha256(jcs(shown)).digest())
        self.expect(f"POST /device/decision ({action})", self.http(
            "DeviceDecisionFunction", "POST", "/device/decision", {"content-type": "application/jwt"},
            body=device.jws({"txn": txn, "action": action, "txn_hash": txn_hash})), 204)
        return shown, txn_hash

    def verify_id_token(self, id_token, client_id, sub):
        keys = self.expect("GET /jwks", self.http("JwksFunction", "GET", "/jwks"), 200)["keys"]
        header_b64, claims_b64, signature_b64 = id_token.split(".")
        header = json.loads(unb64url(header_b64))
        claims = json.loads(unb64url(claims_b64))
        jwk = next((k for k in keys if k.get("kid") == header.get("kid")), None)
        if header.get("alg") != "ES256" or jwk is None:
            raise StepFailed(f"the ID token's header {header} names no key of /jwks {keys}")
        if self.kid and header["kid"] != self.kid:
            raise StepFailed(f"the ID token is signed by {header['kid']}, not the envelope key {self.kid}")
        public = ec.EllipticCurvePublicNumbers(
            int.from_bytes(unb64url(jwk["x"]), "big"), int.from_bytes(unb64url(jwk["y"]), "big"),
            ec.SECP256R1()).public_key()
        raw = unb64url(signature_b64)
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        signing_input = f"{header_b64}.{claims_b64}".encode()
        if self.mode == "kms":
            # KMS Sign with MessageType=DIGEST of SHA-256(input); moto hashes that digest again.
            signed = hashlib.sha256(signing_input).digest()
            how = "SHA-256 of the JWS input's SHA-256 (moto's KMS Sign of a DIGEST)"
        else:
            signed = signing_input
            how = "the JWS input (ES256)"
        try:
            public.verify(der, signed, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise StepFailed(f"the ID token's signature does not verify over {how} under {jwk['kid']}")
        now = time.time()
        if (claims.get("iss") != self.issuer or claims.get("aud") not in (client_id, [client_id])
                or claims.get("sub") != sub or not claims.get("exp", 0) > now or not claims.get("iat", now + 60) <= now + 5):
            raise StepFailed(f"the ID token's claims are wrong: {claims}")
        print(f"  {self.run}: the ID token verifies under /jwks key {jwk['kid'][:8]}… over {how}; iss, aud, sub, exp hold")
        return claims

    def poll_flow(self):
        self.step = "poll"
        device = Device.from_pem("alice-phone", os.path.join(ROOT, "tests", "keys", "alice-phone.pem"))
        rp = basic("demo-rp", "demo-rp-secret")
        api = basic("demo-api", "demo-api-secret")
        discovery = self.expect("GET /.well-known/openid-configuration", self.http(
            "DiscoveryFunction", "GET", "/.well-known/openid-configuration"), 200)
        if discovery.get("issuer") != self.issuer:
            raise StepFailed(f"discovery names issuer {discovery.get('issuer')}, not {self.issuer}")
        auth_req_id, interval, txn = self.start_request(rp, self.endpoints["alice-phone"], {
            "scope": "openid email profile", "login_hint": "alice", "binding_message": "FLOW1"}, "demo-rp, poll")
        grant = {"grant_type": CIBA_GRANT, "auth_req_id": auth_req_id}
        self.expect("POST /token (before the decision)", self.http(
            "TokenFunction", "POST", "/token", {"authorization": rp}, form=grant), 400, "authorization_pending")
        self.approve(device, txn)
        time.sleep(interval)
        tokens = self.expect("POST /token (redeeming)", self.http(
            "TokenFunction", "POST", "/token", {"authorization": rp}, form=grant), 200)
        self.verify_id_token(tokens["id_token"], "demo-rp", "user-alice")
        bearer = {"authorization": f"Bearer {tokens['access_token']}"}
        userinfo = self.expect("GET /userinfo", self.http("UserinfoFunction", "GET", "/userinfo", bearer), 200)
        if userinfo.get("sub") != "user-alice" or userinfo.get("email") != "alice@example.com":
            raise StepFailed(f"/userinfo answered {userinfo}")
        seen = self.expect("POST /introspect (resource server)", self.http(
            "IntrospectFunction", "POST", "/introspect", {"authorization": api},
            form={"token": tokens["access_token"]}), 200)
        if seen.get("active") is not True or seen.get("client_id") != "demo-rp" or seen.get("sub") != "user-alice":
            raise StepFailed(f"/introspect answered {seen}")
        self.expect("POST /token (redeemed again)", self.http(
            "TokenFunction", "POST", "/token", {"authorization": rp}, form=grant), 400, "invalid_grant")
        refreshed = self.expect("POST /token (refresh)", self.http(
            "TokenFunction", "POST", "/token", {"authorization": rp},
            form={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}), 200)
        if refreshed["refresh_token"] == tokens["refresh_token"] or refreshed["access_token"] == tokens["access_token"]:
            raise StepFailed("the refresh answered the same tokens")
        if "id_token" in refreshed:
            self.verify_id_token(refreshed["id_token"], "demo-rp", "user-alice")
        seen = self.expect("POST /introspect (the refreshed access token)", self.http(
            "IntrospectFunction", "POST", "/introspect", {"authorization": api},
            form={"token": refreshed["access_token"]}), 200)
        if seen.get("active") is not True:
            raise StepFailed(f"/introspect answered {seen} for the refreshed access token")
        self.expect("POST /revoke (the first access token)", self.http(
            "RevokeFunction", "POST", "/revoke", {"authorization": rp},
            form={"token": tokens["access_token"], "token_type_hint": "access_token"}), 200)
        seen = self.expect("POST /introspect (the revoked access token)", self.http(
            "IntrospectFunction", "POST", "/introspect", {"authorization": api},
            form={"token": tokens["access_token"]}), 200)
        if seen != {"active": False}:
            raise StepFailed(f"/introspect answered {seen} for a revoked access token")
        self.expect("POST /revoke (the refresh token: its family)", self.http(
            "RevokeFunction", "POST", "/revoke", {"authorization": rp},
            form={"token": refreshed["refresh_token"], "token_type_hint": "refresh_token"}), 200)
        seen = self.expect("POST /introspect (after the revocation)", self.http(
            "IntrospectFunction", "POST", "/introspect", {"authorization": api},
            form={"token": refreshed["access_token"]}), 200)
        if seen != {"active": False}:
            raise StepFailed(f"/introspect answered {seen} after the family was revoked")
        self.expect("POST /token (refresh of the revoked family)", self.http(
            "TokenFunction", "POST", "/token", {"authorization": rp},
            form={"grant_type": "refresh_token", "refresh_token": refreshed["refresh_token"]}), 400, "invalid_grant")

    def fapi_client(self):
        """demo-fapi authenticates with private_key_jwt: each assertion's jti is spent once."""
        self.step = "private_key_jwt"
        with open(os.path.join(ROOT, "tests", "keys", "demo-fapi-rp.pem"), "rb") as f:
            key = serialization.load_pem_private_key(f.read(), None)
        kid = "KiTB5FVwq84plCCGBIFZZgOJeR7PSCvih5nzN5tz1xk"
        for logical_id, path, wanted in (("IntrospectFunction", "/introspect", {"active": False}),
                                         ("RevokeFunction", "/revoke", None)):
            assertion = client_assertion("demo-fapi", kid, key, self.issuer)
            form = {"token": "no-such-token", "client_id": "demo-fapi", "client_assertion": assertion,
                    "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}
            body = self.expect(f"POST {path} (demo-fapi, private_key_jwt)",
                               self.http(logical_id, "POST", path, form=form), 200)
            if body != wanted:
                raise StepFailed(f"{path} answered {body}, expected {wanted}")
            self.expect(f"POST {path} (the same assertion again)",
                        self.http(logical_id, "POST", path, form=form), 401, "invalid_client")

    def limits(self):
        """A wrong user code, then the right one (which clears the count); a user's pending
        requests from one client capped (the decided ones pruned), and a denial."""
        self.step = "limits"
        alice = Device.from_pem("alice-phone", os.path.join(ROOT, "tests", "keys", "alice-phone.pem"))
        bob = Device.from_pem("bob-phone", os.path.join(ROOT, "tests", "keys", "bob-phone.pem"))
        pos = {"client_id": "demo-pos", "client_secret": "demo-pos-secret", "scope": "openid",
               "login_hint": "alice", "binding_message": "POS1"}
        self.expect("POST /bc-authorize (demo-pos, a wrong user_code)", self.http(
            "BcAuthorizeFunction", "POST", "/bc-authorize", form=dict(pos, user_code="0000")), 400, "invalid_user_code")
        _, _, txn = self.start_request(None, self.endpoints["alice-phone"], dict(pos, user_code="4321"),
                                       "demo-pos, the right user_code")
        self.approve(alice, txn, action="deny")
        wallet = basic("demo-jwt", "demo-jwt-secret")
        txns = []
        for n in range(1, 6):
            _, _, txn = self.start_request(wallet, self.endpoints["bob-phone"], {
                "scope": "openid", "login_hint": "bob", "binding_message": f"BOB{n}"}, f"demo-jwt for bob, {n} of 5")
            txns.append(txn)
        before = len(self.pushes(self.endpoints["bob-phone"]))
        self.expect("POST /bc-authorize (demo-jwt for bob, a sixth pending)", self.http(
            "BcAuthorizeFunction", "POST", "/bc-authorize", {"authorization": wallet},
            form={"scope": "openid", "login_hint": "bob", "binding_message": "BOB6"}), 403, "access_denied")
        if len(self.pushes(self.endpoints["bob-phone"])) != before:
            raise StepFailed("a refused request was pushed to bob")
        self.approve(bob, txns[0], action="deny")
        self.start_request(wallet, self.endpoints["bob-phone"], {
            "scope": "openid", "login_hint": "bob", "binding_message": "BOB7"}, "demo-jwt for bob, once one is decided")

    def register_client(self, mode, path):
        registered = self.expect(f"POST /register ({mode} client)", self.http(
            "RegisterFunction", "POST", "/register",
            {"authorization": f"Bearer {self.registration_token}", "content-type": "application/json"},
            body=json.dumps({
                "client_name": f"Flow {mode} client", "token_endpoint_auth_method": "client_secret_basic",
                "backchannel_token_delivery_mode": mode,
                "backchannel_client_notification_endpoint": self.callbacks.url(path),
            })), 201)
        return registered["client_id"], registered["client_secret"]

    def enrol(self):
        """carol's new phone, enrolled with the seed's one-time code: a new SNS endpoint."""
        device = Device("pending", ec.generate_private_key(ec.SECP256R1()))
        enrolled = self.expect("POST /device/register (carol's phone)", self.http(
            "DeviceRegisterFunction", "POST", "/device/register", {"content-type": "application/json"},
            body=json.dumps({"enrollment_code": "demo-enrol-carol", "public_key": device.public_jwk(),
                             "push_token": f"flow-{self.run}-carol", "platform": "GCM"})), 201)
        device.device_id = enrolled["device_id"]
        token = f"flow-{self.run}-carol"
        arns = find_endpoint_arns(token)
        if len(arns) != 1:
            raise StepFailed(f"{len(arns)} SNS platform endpoints for carol's push token, expected 1")
        # SNS disables an endpoint whose token the platform refused; the app enrolling the same
        # token again (with a new code) re-enables it and keeps its device.
        aws("sns").set_endpoint_attributes(EndpointArn=arns[0], Attributes={"Enabled": "false"})
        code = run([self.options.admin, "enrollment-code", "--user", "carol", "--table", self.table],
                   self.admin_env).strip().splitlines()[-1].split()[0]
        again = self.expect("POST /device/register (carol's phone again, its endpoint disabled)", self.http(
            "DeviceRegisterFunction", "POST", "/device/register", {"content-type": "application/json"},
            body=json.dumps({"enrollment_code": code, "public_key": device.public_jwk(),
                             "push_token": token, "platform": "GCM"})), 201)
        if again["device_id"] != device.device_id:
            raise StepFailed(f"enrolling the same push token again made device {again['device_id']}")
        enabled = aws("sns").get_endpoint_attributes(EndpointArn=arns[0])["Attributes"].get("Enabled")
        if enabled != "true":
            raise StepFailed(f"carol's endpoint is still disabled (Enabled={enabled})")
        return device, arns[0]

    def request_item(self, auth_req_id):
        key = {"pk": {"S": f"AUTHREQ#{auth_req_id.split('.', 1)[0]}"}, "sk": {"S": "AUTHREQ"}}
        item = aws("dynamodb").get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")
        if item is None:
            raise StepFailed(f"no request item {key}")
        return key, item

    def stream_to_notifier(self, key, old, new):
        """The MODIFY record Lambda's stream event source hands the notifier, through the
        template's filter."""
        record = {
            "eventID": secrets.token_hex(16), "eventName": "MODIFY", "eventVersion": "1.1",
            "eventSource": "aws:dynamodb", "awsRegion": REGION,
            "dynamodb": {"ApproximateCreationDateTime": int(time.time()), "Keys": key, "OldImage": old,
                         "NewImage": new, "SequenceNumber": str(int(time.time() * 1e6)),
                         "SizeBytes": len(json.dumps(new)), "StreamViewType": "NEW_AND_OLD_IMAGES"},
            "eventSourceARN": f"arn:aws:dynamodb:{REGION}:123456789012:table/{self.table}/stream/local",
        }
        pattern = json.loads(self.emulators["NotifierFunction"].function.template["Resources"]["NotifierFunction"]
                             ["Properties"]["Events"]["Stream"]["Properties"]["FilterCriteria"]["Filters"][0]["Pattern"])
        if not filter_matches(pattern, record):
            raise StepFailed(f"the template's stream filter drops the decision's record: {record}")
        result = self.invoke("NotifierFunction", {"Records": [record]})
        if result != {"batchItemFailures": []}:
            raise StepFailed(f"the notifier answered {result}")
        print(f"  {self.run}: the decision's stream record passed the template's filter; the notifier queued it")

    def queue_to_deliverer(self, again=False):
        """The SQS event Lambda's queue event source hands the deliverer; the message deleted
        after a batch without failures, as the event source does. `again`: the delivery is to
        fail, the message stays on the queue (returned: its receipt)."""
        sqs = aws("sqs")
        got = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=2,
                                  AttributeNames=["All"], MessageAttributeNames=["All"]).get("Messages", [])
        if len(got) != 1:
            raise StepFailed(f"{len(got)} messages on the notification queue, expected 1")
        message = got[0]
        attributes = {name: {"stringValue": v.get("StringValue"), "binaryValue": None, "stringListValues": [],
                             "binaryListValues": [], "dataType": v.get("DataType", "String")}
                      for name, v in (message.get("MessageAttributes") or {}).items()}
        record = {
            "messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"], "body": message["Body"],
            "attributes": message.get("Attributes") or {}, "messageAttributes": attributes,
            "md5OfBody": message["MD5OfBody"], "eventSource": "aws:sqs",
            "eventSourceARN": rie.Resolver(self.emulators["DelivererFunction"].function.template, {})
            .get_att(["NotificationQueue", "Arn"]),
            "awsRegion": REGION,
        }
        result = self.invoke("DelivererFunction", {"Records": [record]})
        if again:
            if result != {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}:
                raise StepFailed(f"the deliverer answered {result} for a failed attempt")
            print(f"  {self.run}: attempt {record['attributes'].get('ApproximateReceiveCount')} failed; "
                  "the deliverer left the message on the queue for later")
            return message["ReceiptHandle"]
        if result != {"batchItemFailures": []}:
            raise StepFailed(f"the deliverer answered {result}")
        sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        print(f"  {self.run}: the SQS message reached the deliverer, which was done with it")

    def notified_flow(self, mode, device, device_arn):
        self.step = mode
        path = f"/{mode}"
        client_id, secret = self.register_client(mode, path)
        auth = basic(client_id, secret)
        notification_token = secrets.token_urlsafe(24)
        auth_req_id, interval, txn = self.start_request(auth, device_arn, {
            "scope": "openid email", "login_hint": "carol", "binding_message": f"FLOW-{mode.upper()}",
            "client_notification_token": notification_token}, f"{mode} client")
        key, before = self.request_item(auth_req_id)
        self.approve(device, txn)
        _, after = self.request_item(auth_req_id)
        self.stream_to_notifier(key, before, after)
        self.queue_to_deliverer()
        callback = self.callbacks.wait(path, 1)
        if callback["headers"].get("authorization") != f"Bearer {notification_token}":
            raise StepFailed(f"the {mode} callback carried {callback['headers'].get('authorization')!r}")
        if not callback["headers"].get("content-type", "").startswith("application/json"):
            raise StepFailed(f"the {mode} callback's content type is {callback['headers'].get('content-type')!r}")
        body = json.loads(callback["body"])
        if body.get("auth_req_id") != auth_req_id:
            raise StepFailed(f"the {mode} callback names {body.get('auth_req_id')}, not {auth_req_id}")
        print(f"  {self.run}: the {mode} callback arrived with the client's notification token")
        if mode == "ping":
            if set(body) != {"auth_req_id"}:
                raise StepFailed(f"the ping callback carried {sorted(body)}")
            time.sleep(interval)
            tokens = self.expect("POST /token (after the ping)", self.http(
                "TokenFunction", "POST", "/token", {"authorization": auth},
                form={"grant_type": CIBA_GRANT, "auth_req_id": auth_req_id}), 200)
        else:
            tokens = body
            if not {"access_token", "id_token", "token_type"} <= set(body):
                raise StepFailed(f"the push callback carried no tokens: {sorted(body)}")
        self.verify_id_token(tokens["id_token"], client_id, "user-carol")
        userinfo = self.expect(f"GET /userinfo ({mode} tokens)", self.http(
            "UserinfoFunction", "GET", "/userinfo", {"authorization": f"Bearer {tokens['access_token']}"}), 200)
        if userinfo.get("sub") != "user-carol":
            raise StepFailed(f"/userinfo answered {userinfo}")

    def endpoint_down(self, device, device_arn):
        """A ping client whose endpoint answers 503: the first attempt leaves the message on the
        queue, hidden for the back-off; the last one parks it in the dead-letter queue with its
        reason, nothing lost."""
        self.step = "endpoint down"
        client_id, secret = self.register_client("ping", "/down")
        auth_req_id, _, txn = self.start_request(basic(client_id, secret), device_arn, {
            "scope": "openid", "login_hint": "carol", "binding_message": "FLOW-DOWN",
            "client_notification_token": secrets.token_urlsafe(24)}, "ping client, endpoint down")
        key, before = self.request_item(auth_req_id)
        self.approve(device, txn)
        _, after = self.request_item(auth_req_id)
        self.stream_to_notifier(key, before, after)
        receipt = self.queue_to_deliverer(again=True)
        # The back-off has passed (as far as the queue is concerned).
        aws("sqs").change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=receipt, VisibilityTimeout=0)
        self.queue_to_deliverer()
        self.callbacks.wait("/down", 2)
        letters = aws("sqs").receive_message(
            QueueUrl=os.environ["SQS_QUEUE_URL_NotificationDeadLetterQueue"], MaxNumberOfMessages=10,
            WaitTimeSeconds=1, MessageAttributeNames=["All"]).get("Messages", [])
        parked = [m for m in letters if json.loads(m["Body"]).get("auth_req_id") == auth_req_id]
        if len(parked) != 1 or not parked[0].get("MessageAttributes"):
            raise StepFailed(f"the dead-letter queue holds {letters}, expected this notification with its reason")
        reason = next(iter(parked[0]["MessageAttributes"].values())).get("StringValue")
        print(f"  {self.run}: after 2 attempts the notification was parked in the dead-letter queue: {reason}")

    def sweep(self):
        """The scheduled sweep over a table where nothing has expired."""
        self.step = "sweep"
        result = self.invoke("ExpirySweeperFunction", {"version": "0", "id": secrets.token_hex(8),
                                                       "detail-type": "Scheduled Event", "source": "aws.scheduler",
                                                       "account": "123456789012", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                                       "region": REGION, "resources": [], "detail": {}})
        if not isinstance(result, dict) or "expired" not in result:
            raise StepFailed(f"the sweeper answered {result}")
        print(f"  {self.run}: the expiry sweep answered {result}")

    def main(self):
        try:
            self.prepare()
            self.start()
            self.poll_flow()
            self.fapi_client()
            self.limits()
            device, arn = self.enrol()
            self.notified_flow("ping", device, arn)
            self.notified_flow("push", device, arn)
            self.endpoint_down(device, arn)
            self.sweep()
        except (StepFailed, rie.Failure) as e:
            print(f"{self.run}: FAILED in the {self.step} flow: {e}", flush=True)
            for logical_id, emulator in self.emulators.items():
                text = emulator.log_text() if os.path.exists(emulator.log_path) else ""
                errors = [l for l in text.splitlines() if '"ERROR"' in l or "ERROR" in l or "error" in l.lower()]
                if errors:
                    print(f"  {logical_id} ({emulator.log_path}):", file=sys.stderr)
                    for line in errors[-8:]:
                        print(f"    {line[:400]}", file=sys.stderr)
            return 1
        finally:
            self.stop()
        print(f"{self.run}: the poll, ping and push flows answered as documented across "
              f"{len(self.emulators)} functions")
        return 0


def main(argv):
    parser = argparse.ArgumentParser(prog="flow.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--signing", choices=["kms", "envelope"], required=True)
    parser.add_argument("--seed", required=True, help="the seed with the devices' SNS endpoints (tests/aws_setup.py)")
    parser.add_argument("--admin", required=True, help="the ciba-admin binary")
    parser.add_argument("--template", default=os.path.join(ROOT, "template.yaml"))
    parser.add_argument("--build-dir", default=os.path.join(ROOT, ".aws-sam", "build"))
    parser.add_argument("--parameter-overrides", nargs="+", metavar="NAME=VALUE")
    parser.add_argument("--iam-log")
    options = parser.parse_args(argv)
    rie.IAM["log"], rie.IAM["run"] = options.iam_log, f"flow-{options.signing}"
    return Flow(options).main()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
