"""Each function's AWS calls held to its IAM policy in template.yaml, as IAM would hold them.

Neither DynamoDB Local nor moto enforces IAM, so a function whose policy lacks an action it calls
passes every local test and fails in AWS. `tests/rie.py --iam-log FILE` puts one `Checker` (an
HTTP proxy on a free loopback port) between each function it starts and the emulators: the
function's `AWS_ENDPOINT_URL_<SERVICE>` variables point at its proxy, which reads each request's
action and resources as IAM does, evaluates them against the function's role, and either
forwards the request unchanged or answers the error AWS gives (`AccessDeniedException`, SNS's
`AuthorizationError`) without forwarding it. Every call is written to FILE as one JSON line, and
so is the role of each function started. `rie.py iam-report FILE...` (tests/iam_report.py)
then says, per function, what it called against what it is granted, and fails on:
- any refused call;
- a grant that no run used, unless the function's `Metadata.UntestedGrants` in the template says
  why it stays (keyed "action on resource", the resource as the template names it: Table.Arn);
- a grant that runs used but that could go with every call still allowed: each used grant is
  taken out of the role in turn and the run's calls decided again, so removing any one action a
  function needs is shown to make the check fail.

The role is what CloudFormation deploys: SAM's own translator (samtranslator, in the tools venv)
makes it from the template, and its intrinsics are resolved for the run's parameters, resources
named by their local ARNs. The template's `Policies` are the function's own grants; what SAM adds
(AWSLambdaBasicExecutionRole, AWSXrayWriteOnlyAccess, the event source mappings' managed
policies, a SendMessage policy for a stream's OnFailure queue) serves Lambda itself, allows
calls like any other statement, and is never reported unused. A managed policy not modelled in
MANAGED_POLICIES is refused.

IAM semantics kept here: an action is allowed when an Allow statement matches its action,
resource and conditions and no Deny statement does; actions match case-insensitively with `*`
and `?`, resources with `*` and `?` case-sensitively. A DynamoDB `TransactWriteItems` is
authorised item by item (PutItem, UpdateItem, DeleteItem, ConditionCheckItem), a
`TransactGetItems` as GetItem, an SQS `SendMessageBatch` as SendMessage (likewise
DeleteMessageBatch and ChangeMessageVisibilityBatch). Conditions: the String*, Bool and Null
operators over `kms:EncryptionContext:<key>`, `kms:EncryptionContextKeys`, `kms:CallerAccount`,
`aws:SecureTransport`; any other operator or key is a mistake of this script, reported, never
silently allowed.
"""
import http.client
import http.server
import json
import os
import re
import socketserver
import threading
import time
import urllib.parse

ACCOUNT = "123456789012"

# The AWS managed policies SAM attaches to function roles, with their statements as AWS
# publishes them. They serve Lambda itself (logs, traces, the event source mappings' polling):
# their grants are never reported unused. A role with any other managed policy is refused.
MANAGED_POLICIES = {
    "AWSLambdaBasicExecutionRole": [
        {"Effect": "Allow", "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": "*"},
    ],
    "AWSXrayWriteOnlyAccess": [
        {"Effect": "Allow",
         "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules",
                    "xray:GetSamplingTargets", "xray:GetSamplingStatisticSummaries"],
         "Resource": "*"},
    ],
    "AWSLambdaSQSQueueExecutionRole": [
        {"Effect": "Allow", "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
         "Resource": "*"},
        {"Effect": "Allow", "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": "*"},
    ],
    "AWSLambdaDynamoDBExecutionRole": [
        {"Effect": "Allow",
         "Action": ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
                    "dynamodb:ListStreams", "logs:CreateLogGroup", "logs:CreateLogStream",
                    "logs:PutLogEvents"],
         "Resource": "*"},
    ],
}


_TRANSLATED = {}


def translated_role(template, function_id, parameters):
    """The function's AWS::IAM::Role as SAM's own translator writes it: the inline policy of
    the template's `Policies` (`<Function>RolePolicy<N>`), the policies SAM adds for event
    sources and destinations, and the managed policy ARNs."""
    import copy

    key = (id(template), tuple(sorted(parameters.items())))
    if key not in _TRANSLATED:
        from samtranslator.translator.transform import transform

        class NoManagedPolicies:
            def load(self):
                return {}

        document = copy.deepcopy(template)
        for resource in document.get("Resources", {}).values():
            if resource.get("Type") == "AWS::Serverless::Function":
                resource.setdefault("Properties", {})["CodeUri"] = "s3://local/code.zip"
        os.environ.setdefault("AWS_DEFAULT_REGION", os.environ.get("AWS_REGION") or "us-east-1")
        _TRANSLATED[key] = transform(document, dict(parameters), NoManagedPolicies())
    resources = _TRANSLATED[key]["Resources"]
    role = resources[function_id]["Properties"].get("Role") or {}
    name = role.get("Fn::GetAtt", [None])[0] if isinstance(role, dict) else None
    if name not in resources:
        raise PolicyError(f"{function_id}: its role {role} is not a role of the stack")
    return resources[name]["Properties"], f"{function_id}RolePolicy"


# Actions authorised under another action's name.
BATCH_AS = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}
TRANSACT_ITEM_ACTION = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Get": "dynamodb:GetItem",
}
# X-Amz-Target prefixes of the JSON protocols, and the IAM service prefix of each.
TARGET_PREFIX = {
    "DynamoDB_20120810": "dynamodb",
    "TrentService": "kms",
    "secretsmanager": "secretsmanager",
    "AmazonSQS": "sqs",
}


class PolicyError(Exception):
    """The template holds something this checker cannot evaluate."""


def as_list(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def glob_match(pattern, value, case_sensitive=True):
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case_sensitive else re.IGNORECASE) is not None


class Statement:
    def __init__(self, document, labels, implicit=None):
        self.effect = document.get("Effect")
        if self.effect not in ("Allow", "Deny"):
            raise PolicyError(f"statement with Effect {self.effect!r}: {document}")
        if "NotAction" in document or "NotResource" in document or "Principal" in document:
            raise PolicyError(f"NotAction, NotResource and Principal are not evaluated here: {document}")
        self.actions = [str(a) for a in as_list(document.get("Action"))]
        self.resources = [str(r) for r in as_list(document.get("Resource"))]
        if not self.actions or not self.resources:
            raise PolicyError(f"statement without Action or Resource: {document}")
        self.condition = document.get("Condition") or {}
        # How each resource is written in the template (Table.Arn for the table's local ARN).
        self.labels = labels
        # The managed policy this statement comes from, for SAM's implicit ones.
        self.implicit = implicit

    def to_json(self):
        return {"Effect": self.effect, "Action": self.actions, "Resource": self.resources,
                "Condition": self.condition, "labels": {r: self.labels.get(r, r) for r in self.resources},
                "implicit": self.implicit}

    @classmethod
    def from_json(cls, data):
        return cls({k: data[k] for k in ("Effect", "Action", "Resource", "Condition")},
                   data["labels"], data["implicit"])

    def without(self, action):
        """This statement less one action pattern (None when none is left)."""
        data = self.to_json()
        data["Action"] = [a for a in self.actions if a != action]
        return Statement.from_json(data) if data["Action"] else None

    def grants(self):
        """(action, resource label) of each Allow."""
        if self.effect != "Allow":
            return []
        return [(a, self.labels.get(r, r)) for a in self.actions for r in self.resources]

    def matches(self, action, resource, context):
        """The (action pattern, resource pattern) that match, or None."""
        pattern = next((a for a in self.actions if glob_match(a, action, case_sensitive=False)), None)
        if pattern is None:
            return None
        target = next((r for r in self.resources if glob_match(r, resource)), None)
        if target is None or not conditions_hold(self.condition, context):
            return None
        return pattern, target


def condition_values(key, context):
    if key not in CONDITION_KEYS and not key.startswith("kms:EncryptionContext:"):
        raise PolicyError(f"condition key {key} is not evaluated by tests/iam.py")
    value = context.get(key)
    return None if value is None else as_list(value)


CONDITION_KEYS = {"kms:EncryptionContextKeys", "kms:CallerAccount", "aws:SecureTransport"}


def conditions_hold(condition, context):
    for operator, tests in condition.items():
        base = operator.removesuffix("IfExists")
        for key, wanted in tests.items():
            values = condition_values(key, context)
            wanted = [str(w) for w in as_list(wanted)]
            if base == "Null":
                if (values is None) != (wanted == ["true"]):
                    return False
                continue
            if values is None:
                if operator.endswith("IfExists") or base.startswith("StringNot"):
                    continue
                return False
            if base == "StringEquals":
                ok = any(v in wanted for v in values)
            elif base == "StringNotEquals":
                ok = not any(v in wanted for v in values)
            elif base == "StringLike":
                ok = any(glob_match(w, v) for v in values for w in wanted)
            elif base == "StringNotLike":
                ok = not any(glob_match(w, v) for v in values for w in wanted)
            elif base == "Bool":
                ok = any(str(v).lower() in wanted for v in values)
            else:
                raise PolicyError(f"condition operator {operator} is not evaluated by tests/iam.py")
            if not ok:
                return False
    return True


class Policy:
    """One function's role: its statements, resolved."""

    def __init__(self, function_id, statements):
        self.function_id = function_id
        self.statements = statements

    @classmethod
    def of(cls, template, function_id, resolver):
        """The role SAM makes for the function, its intrinsics resolved for this run."""
        role, own = translated_role(template, function_id, resolver.parameters)
        statements = []
        for policy in role.get("Policies") or []:
            # Ours: what the template's Policies say. SAM's (an event source's destination):
            # reported as SAM's, like the managed policies.
            implicit = None if policy["PolicyName"].startswith(own) else policy["PolicyName"]
            document = resolver.tree(policy["PolicyDocument"])
            for statement in as_list((document or {}).get("Statement")):
                statements.append(Statement(statement, resolver.names, implicit=implicit))
        for arn in resolver.tree(role.get("ManagedPolicyArns") or []):
            name = str(arn).rsplit("/", 1)[-1]
            if name not in MANAGED_POLICIES:
                raise PolicyError(f"{function_id}: managed policy {arn} is not modelled by tests/iam.py")
            statements.extend(Statement(d, {}, implicit=name) for d in MANAGED_POLICIES[name])
        return cls(function_id, statements)

    def decide(self, action, resource, context):
        """(allowed, [(action pattern, resource label)] of the Allows that matched)."""
        allows = []
        for statement in self.statements:
            hit = statement.matches(action, resource, context)
            if hit is None:
                continue
            if statement.effect == "Deny":
                return False, []
            if statement.implicit is None:
                allows.append((hit[0], statement.labels.get(hit[1], hit[1])))
            else:
                allows.append((hit[0], f"{statement.implicit}:{hit[1]}"))
        return bool(allows), allows

    def grants(self):
        return sorted({g for s in self.statements if s.implicit is None for g in s.grants()})

    def without(self, action, label):
        """The policy less one grant: the action pattern taken out of every explicit statement
        that grants it on that resource."""
        statements = []
        for s in self.statements:
            if s.implicit is None and (action, label) in s.grants():
                s = s.without(action)
            if s is not None:
                statements.append(s)
        return Policy(self.function_id, statements)


def region_of(headers):
    auth = headers.get("Authorization") or ""
    match = re.search(r"Credential=[^/]+/\d+/([^/]+)/([^/]+)/aws4_request", auth)
    return (match.group(1), match.group(2)) if match else (os.environ.get("AWS_REGION") or "us-east-1", None)


def queue_arn(url, region):
    parts = urllib.parse.urlparse(url).path.strip("/").split("/")
    account, name = (parts[-2], parts[-1]) if len(parts) >= 2 else (ACCOUNT, parts[-1])
    return f"arn:aws:sqs:{region}:{account}:{name}"


def kms_arn(key_id, region):
    if key_id.startswith("arn:"):
        return key_id
    if key_id.startswith("alias/"):
        return f"arn:aws:kms:{region}:{ACCOUNT}:{key_id}"
    return f"arn:aws:kms:{region}:{ACCOUNT}:key/{key_id}"


def table_arn(name, region, index=None):
    arn = name if name.startswith("arn:") else f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{name}"
    return f"{arn}/index/{index}" if index else arn


def authorisations(service, operation, body, region):
    """What IAM authorises for one request: [(action, resource, condition context)], or None
    when the resource is only known from the answer (a Decrypt without KeyId, a secret named
    by name): then [(action, None, context)]."""
    action = f"{service}:{operation}"
    if service == "dynamodb":
        if operation in ("BatchGetItem", "BatchWriteItem"):
            return [(action, table_arn(t, region), {}) for t in sorted(body.get("RequestItems") or {})]
        if operation in ("TransactWriteItems", "TransactGetItems"):
            out = []
            for item in body.get("TransactItems") or []:
                (kind, request), = item.items()
                out.append((TRANSACT_ITEM_ACTION[kind], table_arn(request["TableName"], region), {}))
            return out
        if operation in ("ListTables",):
            return [(action, "*", {})]
        name = body.get("TableName") or body.get("TableArn") or body.get("ResourceArn") or ""
        return [(action, table_arn(name, region, body.get("IndexName")), {})]
    if service == "kms":
        context = {"kms:CallerAccount": ACCOUNT, "aws:SecureTransport": "true"}
        encryption = body.get("EncryptionContext") or {}
        for k, v in encryption.items():
            context[f"kms:EncryptionContext:{k}"] = v
        if encryption:
            context["kms:EncryptionContextKeys"] = sorted(encryption)
        if operation in ("CreateKey", "ListKeys", "ListAliases"):
            return [(action, "*", context)]
        key = body.get("KeyId")
        return [(action, kms_arn(key, region) if key else None, context)]
    if service == "secretsmanager":
        secret = body.get("SecretId") or ""
        return [(action, secret if secret.startswith("arn:") else None, {})]
    if service == "sqs":
        action = BATCH_AS.get(action, action)
        if operation in ("ListQueues", "CreateQueue", "GetQueueUrl"):
            return [(action, f"arn:aws:sqs:{region}:{ACCOUNT}:{body.get('QueueName', '*')}", {})]
        return [(action, queue_arn(body.get("QueueUrl") or "", region), {})]
    if service == "sns":
        for member in ("TargetArn", "TopicArn", "EndpointArn", "PlatformApplicationArn", "SubscriptionArn"):
            if body.get(member):
                return [(action, body[member], {})]
        return [(action, "*", {})]
    return [(action, "*", {})]


def denial(service, function_id, action, resource):
    """The status, headers and body AWS answers a call the role may not make."""
    role = f"arn:aws:sts::{ACCOUNT}:assumed-role/local-{function_id}Role/local-{function_id}"
    message = (f"User: {role} is not authorized to perform: {action} on resource: {resource} "
               f"because no identity-based policy allows the {action} action")
    if service == "sns":
        body = ("<ErrorResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><Error>"
                "<Type>Sender</Type><Code>AuthorizationError</Code>"
                f"<Message>{message}</Message></Error><RequestId>local-iam</RequestId></ErrorResponse>")
        return 403, {"Content-Type": "text/xml"}, body.encode()
    headers = {
        "Content-Type": "application/x-amz-json-1.0" if service in ("dynamodb", "sqs") else "application/x-amz-json-1.1",
        "x-amzn-ErrorType": "AccessDeniedException",
        "x-amzn-RequestId": "local-iam",
    }
    if service == "sqs":
        headers["x-amzn-query-error"] = "AccessDenied;Sender"
    key = "Message" if service == "dynamodb" else "message"
    body = json.dumps({"__type": "com.amazon.coral.service#AccessDeniedException", key: message})
    return 400, headers, body.encode()


class Checker:
    """The proxy in front of the emulators for one function."""

    def __init__(self, function_id, policy, upstreams, log_path, run):
        self.function_id = function_id
        self.policy = policy
        self.upstreams = upstreams  # IAM service prefix -> base URL
        self.log_path = log_path
        self.run = run
        self.lock = threading.Lock()
        self.write({"kind": "policy", "run": run, "function": function_id,
                    "statements": [st.to_json() for st in policy.statements]})
        checker = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                checker.handle(self)

            do_GET = do_POST
            do_PUT = do_POST
            do_DELETE = do_POST

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def write(self, record):
        with self.lock, open(self.log_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def handle(self, request):
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        region, scope = region_of(request.headers)
        target = request.headers.get("X-Amz-Target")
        if target:
            prefix, _, operation = target.partition(".")
            service = TARGET_PREFIX.get(prefix, scope or prefix.lower())
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {}
        else:
            form = urllib.parse.parse_qs(raw.decode(errors="replace"))
            body = {k: v[0] for k, v in form.items()}
            operation = body.get("Action", "")
            service = scope or "unknown"
        upstream = self.upstreams.get(service)
        checks = authorisations(service, operation, body, region)
        deferred = any(resource is None for _, resource, _ in checks)
        if not deferred and not self.authorise(service, checks, request):
            return
        if upstream is None:
            self.write({"kind": "call", "run": self.run, "function": self.function_id,
                        "action": f"{service}:{operation}", "resource": "*", "allowed": False,
                        "matched": [], "problem": f"no upstream for service {service}"})
            return self.reply(request, 502, {"Content-Type": "text/plain"}, b"tests/iam.py: no upstream")
        status, headers, answer = forward(upstream, request, raw)
        if deferred:
            resolved = resolve_from_answer(service, answer, region)
            checks = [(a, r if r is not None else resolved, c) for a, r, c in checks]
            if not self.authorise(service, checks, request):
                return
        self.reply(request, status, headers, answer)

    def authorise(self, service, checks, request):
        """Logs each check; answers the denial and returns False at the first refused one."""
        for action, resource, context in checks:
            try:
                allowed, matched = self.policy.decide(action, resource or "*", context)
                problem = None
            except PolicyError as e:
                allowed, matched, problem = False, [], str(e)
            self.write({"kind": "call", "run": self.run, "function": self.function_id,
                        "action": action, "resource": resource, "allowed": allowed,
                        "matched": [list(m) for m in matched], "problem": problem,
                        "context": context, "at": time.time()})
            if not allowed:
                self.reply(request, *denial(service, self.function_id, action, resource))
                return False
        return True

    @staticmethod
    def reply(request, status, headers, body):
        request.send_response(status)
        for name, value in headers.items():
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)


HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


def forward(base, request, raw):
    url = urllib.parse.urlparse(base)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Host"] = url.netloc
        connection.request(request.command, request.path, body=raw, headers=headers)
        response = connection.getresponse()
        answer = response.read()
        out = {k: v for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP}
        return response.status, out, answer
    finally:
        connection.close()


def resolve_from_answer(service, answer, region):
    try:
        body = json.loads(answer or b"{}")
    except ValueError:
        return "*"
    if service == "kms" and body.get("KeyId"):
        return kms_arn(body["KeyId"], region)
    if service == "secretsmanager" and body.get("ARN"):
        return body["ARN"]
    return "*"


def upstreams_from_env(environ):
    """IAM service prefix -> where the emulator for it listens, from AWS_ENDPOINT_URL_*."""
    names = {"dynamodb": "DYNAMODB", "sns": "SNS", "sqs": "SQS", "kms": "KMS",
             "secretsmanager": "SECRETS_MANAGER"}
    out = {}
    for service, suffix in names.items():
        url = environ.get(f"AWS_ENDPOINT_URL_{suffix}") or environ.get("AWS_ENDPOINT_URL")
        if url:
            out[service] = url
    return out
