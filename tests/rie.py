#!/usr/bin/env python3
"""The functions of template.yaml run as Lambda runs them, without Docker.

`sam local invoke` starts a container holding AWS's official Lambda Runtime Interface Emulator
(RIE) and the function's bootstrap. The same emulator ships inside the SAM CLI package
(samcli/local/rapid/aws-lambda-rie-*); this script starts it on the host instead:

    rie.py invoke FUNCTION EVENT [options]
        FUNCTION is a logical id (TokenFunction) or a crate name (token); EVENT a JSON file or
        `-` for standard input. Prints the function's result on stdout and the emulator's and
        function's log on stderr, as `sam local invoke` does.
    rie.py events [options]
        Every events/*.json to its function (one emulator per function: its first event is a
        cold start), each answer checked against tests/event-expectations.json; one line per
        event; exit 1 if any answer is wrong.
    rie.py misconfigured FUNCTION NAME=VALUE [options]
        Starts FUNCTION with one environment variable replaced and checks that it stops at
        cold start with one log line naming the setting (what a deployed function does).
    rie.py iam-report LOG... [options]
        What each function called against what its policy grants, from the logs of runs made
        with --iam-log (tests/iam.py); exit 1 on any refused call, and on any grant that no
        run used unless the function's Metadata.UntestedGrants says why it stays.
    rie.py cold-start RUNS OUT.json FUNCTION... [options]
        For bench/report.sh: RUNS cold starts of each function with events/<crate>.json sent
        twice; the emulator's INIT REPORT, the first answer and the warm invocation, as JSON.

Options:
    --native              run target/lambda/<crate>/bootstrap (an x86_64 `cargo lambda build`)
                          instead of what `sam build` made
    --bootstrap PATH      run this bootstrap
    --build-dir DIR       where `sam build` put the artifacts (default .aws-sam/build)
    --env-vars FILE       environment overrides, in `sam local invoke --env-vars` format:
                          {"Parameters": {VAR: value}, "TokenFunction": {VAR: value}}
    --parameter-overrides K=V [K=V ...]
                          template parameters (as `sam local invoke --parameter-overrides`)
    --template FILE       default template.yaml
    --iam-log FILE        hold every AWS call of the functions started to its IAM policy in the
                          template, as IAM would (tests/iam.py), and log each call to FILE
    --iam-run NAME        the run's name in that log (e.g. events, flow-kms)

The function's environment is what Lambda would give it: Globals.Function merged with its own
Properties, with `!Ref`, `!Sub`, `!If`, `!GetAtt`, `!Join` and `!Select` resolved. Parameters
take their overrides or defaults; the pseudo parameters AWS::Region (from AWS_REGION, default
us-east-1), AWS::AccountId (123456789012), AWS::Partition, AWS::URLSuffix and AWS::StackName
(local) get local values, and resources local stand-ins:
    the DynamoDB table   $TABLE_NAME, default ciba-local (the local API's table);
    a KMS key            $KMS_KEY_ID_<logical id>, else $KMS_KEY_ID (e.g. a key on moto); when
                         the signing key's is unset, KMS_KEY_ID is empty and
                         SIGNING_KEY_FILE names $SIGNING_KEY_FILE or .deps/invoke/op-key.pem (a
                         P-256 key made on first use), which the functions then sign with;
    the HTTP API         local (so the default issuer is https://local.execute-api...);
    an SQS queue         $SQS_QUEUE_URL_<logical id> (e.g. a queue on moto);
    a secret             $SECRET_ARN_<logical id> (e.g. a secret in moto's Secrets Manager);
    anything else        its logical id, as `sam local invoke` does;
and `!GetAtt X.Arn` (and Table.StreamArn) the ARN AWS would give that stand-in.
Nothing else of the caller's environment reaches the function but AWS_REGION, the credentials
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN; dummy ones when unset, which the
emulators accept) and the endpoint overrides AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>
(DynamoDB Local, moto). Lambda's own variables are set from the template: memory, timeout,
AWS_LAMBDA_LOG_FORMAT from LoggingConfig.

An arm64 bootstrap (what `sam build` makes for `Architectures: [arm64]`) runs under qemu-user
(`qemu-aarch64 -L /usr/aarch64-linux-gnu`); timings under qemu are not cold starts.
"""
import argparse
import functools
import glob
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INVOKE_PATH = "/2015-03-31/functions/function/invocations"
PSEUDO = {
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "local",
}
PASSED_THROUGH = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
ELF_MACHINE = {0x3E: "x86_64", 0xB7: "arm64"}
# --iam-log FILE and --iam-run NAME: every function started holds its AWS calls to its policy
# (tests/iam.py) and logs them to FILE under the run's name.
IAM = {"log": None, "run": "local"}


class Failure(Exception):
    """A mistake of the caller or the template, reported as one line."""


@functools.lru_cache(maxsize=None)
def load_template(path):
    # SAM's own loader: it turns the short forms (!Ref, !Sub, ...) into {"Ref": ...} etc.
    from samcli.yamlhelper import yaml_parse

    with open(path) as f:
        return yaml_parse(f.read())


class Resolver:
    """CloudFormation intrinsics, resolved to local values."""

    def __init__(self, template, parameters):
        self.template = template
        self.parameters = parameters
        self.pseudo = dict(PSEUDO, **{"AWS::Region": os.environ.get("AWS_REGION") or "us-east-1"})
        # Each local value a resource resolved to, and how the template names it (Table.Arn):
        # tests/iam.py reports grants by these names, the same in every run.
        self.names = {}

    def ref(self, name):
        if name in self.pseudo:
            return self.pseudo[name]
        declared = self.template.get("Parameters", {})
        if name in declared:
            if name in self.parameters:
                value = self.parameters[name]
            elif "Default" in declared[name]:
                value = str(declared[name]["Default"])
            else:
                raise Failure(
                    f"template parameter {name} has no default: pass --parameter-overrides {name}=..."
                )
            if declared[name].get("Type") == "CommaDelimitedList":
                return value.split(",")
            return value
        resource = self.template.get("Resources", {}).get(name)
        if resource is None:
            raise Failure(f"!Ref {name}: no such parameter or resource")
        value = self.local_ref(name, resource.get("Type"))
        if value:
            self.names.setdefault(value, name)
        return value

    def local_ref(self, name, kind):
        if kind == "AWS::DynamoDB::Table":
            return os.environ.get("TABLE_NAME") or "ciba-local"
        if kind == "AWS::KMS::Key":
            return os.environ.get(f"KMS_KEY_ID_{name}", os.environ.get("KMS_KEY_ID", ""))
        if kind == "AWS::Serverless::HttpApi":
            return "local"
        if kind == "AWS::SQS::Queue":
            return os.environ.get(f"SQS_QUEUE_URL_{name}") or name
        if kind == "AWS::SecretsManager::Secret":
            return os.environ.get(f"SECRET_ARN_{name}") or name
        return name

    def condition(self, name):
        conditions = self.template.get("Conditions", {})
        if name not in conditions:
            raise Failure(f"condition {name} is not declared")
        return self.truth(conditions[name])

    def truth(self, node):
        (fn, args), = node.items()
        if fn == "Fn::Equals":
            return self.value(args[0]) == self.value(args[1])
        if fn == "Fn::Not":
            return not self.truth(args[0])
        if fn == "Fn::And":
            return all(self.truth(a) for a in args)
        if fn == "Fn::Or":
            return any(self.truth(a) for a in args)
        if fn == "Condition":
            return self.condition(args)
        raise Failure(f"condition function {fn} is not supported")

    def sub(self, text, names):
        def one(match):
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in names:
                return self.value(names[name])
            if "." in name:
                return self.get_att(name.split(".", 1))
            return self.ref(name)

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def get_att(self, args):
        """The ARN of a resource's local stand-in (the one its !Ref names), as AWS writes it."""
        resource, attribute = args
        region, account = self.pseudo["AWS::Region"], PSEUDO["AWS::AccountId"]
        kind = (self.template.get("Resources", {}).get(resource) or {}).get("Type")
        local = self.local_ref(resource, kind) if kind else resource
        if kind == "AWS::DynamoDB::Table" and attribute == "Arn":
            arn = f"arn:aws:dynamodb:{region}:{account}:table/{local}"
        elif kind == "AWS::DynamoDB::Table" and attribute == "StreamArn":
            arn = f"arn:aws:dynamodb:{region}:{account}:table/{local}/stream/local"
        elif kind == "AWS::KMS::Key" and attribute == "Arn":
            arn = local if local.startswith("arn:") else f"arn:aws:kms:{region}:{account}:key/{local}"
        elif kind == "AWS::SQS::Queue" and attribute == "Arn":
            path = urllib.parse.urlparse(local).path.strip("/").split("/")
            owner, name = (path[-2], path[-1]) if len(path) >= 2 else (account, path[-1])
            arn = f"arn:aws:sqs:{region}:{owner}:{name}"
        else:
            arn = f"arn:aws:local:{region}:{account}:{resource}/{attribute}"
        self.names.setdefault(arn, f"{resource}.{attribute}")
        return arn

    def value(self, node):
        """The string a node resolves to; None for AWS::NoValue."""
        if isinstance(node, bool):
            return "true" if node else "false"
        if isinstance(node, (int, float, str)):
            return str(node)
        if isinstance(node, list):
            return [self.value(n) for n in node]
        if isinstance(node, dict) and len(node) == 1:
            (fn, args), = node.items()
            if fn == "Ref":
                return None if args == "AWS::NoValue" else self.ref(args)
            if fn == "Fn::Sub":
                return self.sub(args, {}) if isinstance(args, str) else self.sub(args[0], args[1])
            if fn == "Fn::If":
                return self.value(args[1] if self.condition(args[0]) else args[2])
            if fn == "Fn::GetAtt":
                return self.get_att(args.split(".", 1) if isinstance(args, str) else args)
            if fn == "Fn::Join":
                return args[0].join(v for v in self.value(args[1]) if v is not None)
            if fn == "Fn::Select":
                return self.value(args[1])[int(self.value(args[0]))]
            if fn.startswith("Fn::") or fn == "Condition":
                raise Failure(f"{fn} is not supported by this script")
        raise Failure(f"cannot resolve {node!r} to a value")

    def tree(self, node):
        """A whole structure (a policy) resolved: intrinsics replaced by their values, `!If`
        branches chosen, AWS::NoValue dropped (None for the node itself)."""
        if isinstance(node, dict) and len(node) == 1:
            (fn, args), = node.items()
            if fn == "Fn::If":
                return self.tree(args[1] if self.condition(args[0]) else args[2])
            if fn == "Ref" or fn.startswith("Fn::"):
                return self.value(node)
        if isinstance(node, dict):
            out = {k: self.tree(v) for k, v in node.items()}
            return {k: v for k, v in out.items() if v is not None}
        if isinstance(node, list):
            return [v for v in (self.tree(n) for n in node) if v is not None]
        return node


class Function:
    """One AWS::Serverless::Function of the template, as Lambda would configure it."""

    def __init__(self, template, logical_id, parameters, env_overrides):
        resource = template["Resources"][logical_id]
        globals_ = template.get("Globals", {}).get("Function", {})
        properties = resource.get("Properties", {})
        merged = dict(globals_, **properties)
        self.logical_id = logical_id
        self.crate = crate_of(resource)
        self.memory = int(merged.get("MemorySize", 128))
        self.timeout = int(merged.get("Timeout", 3))
        self.architecture = (merged.get("Architectures") or ["x86_64"])[0]
        self.log_format = (merged.get("LoggingConfig") or {}).get("LogFormat", "Text")
        variables = dict(
            (globals_.get("Environment") or {}).get("Variables") or {},
            **((properties.get("Environment") or {}).get("Variables") or {}),
        )
        resolver = Resolver(template, parameters)
        self.template = template
        self.resolver = resolver
        self.variables = {}
        for name, node in variables.items():
            resolved = resolver.value(node)
            if resolved is not None:
                self.variables[name] = resolved
        self.variables.update(env_overrides.get("Parameters", {}))
        self.variables.update(env_overrides.get(logical_id, {}))

    def environment(self, bootstrap_dir):
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "AWS_REGION": os.environ.get("AWS_REGION") or "us-east-1",
            "AWS_DEFAULT_REGION": os.environ.get("AWS_REGION") or "us-east-1",
            "AWS_LAMBDA_FUNCTION_NAME": self.logical_id,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(self.timeout),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.logical_id}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "local",
            "LAMBDA_TASK_ROOT": bootstrap_dir,
            "_HANDLER": "bootstrap",
        }
        if self.log_format == "JSON":
            env["AWS_LAMBDA_LOG_FORMAT"] = "JSON"
        for name in PASSED_THROUGH:
            env[name] = os.environ.get(name) or ("local" if name != "AWS_SESSION_TOKEN" else "")
        if not env["AWS_SESSION_TOKEN"]:
            del env["AWS_SESSION_TOKEN"]
        for name, value in os.environ.items():
            if name == "AWS_ENDPOINT_URL" or name.startswith("AWS_ENDPOINT_URL_"):
                env[name] = value
        env.update(self.variables)
        if "KMS_KEY_ID" in env and not env["KMS_KEY_ID"] and "SIGNING_KEY_FILE" not in env:
            env["SIGNING_KEY_FILE"] = os.environ.get("SIGNING_KEY_FILE") or local_signing_key()
        return env


def local_signing_key():
    """A P-256 key kept under .deps/invoke/, standing in for the KMS key across invocations."""
    path = os.path.join(ROOT, ".deps", "invoke", "op-key.pem")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        subprocess.run(
            ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", path],
            check=True, capture_output=True,
        )
    return path


def crate_of(resource):
    """The function's crate: the last part of its CodeUri (functions/<crate>)."""
    return os.path.basename(str(resource.get("Properties", {}).get("CodeUri", "")).rstrip("/"))


def functions_of(template):
    return {
        name: resource
        for name, resource in template.get("Resources", {}).items()
        if resource.get("Type") == "AWS::Serverless::Function"
    }


def find_function(template, name):
    """The logical id for a logical id or a crate name."""
    functions = functions_of(template)
    if name in functions:
        return name
    for logical_id, resource in functions.items():
        if crate_of(resource) == name:
            return logical_id
    raise Failure(f"no function {name} in the template (one of: {', '.join(functions)})")


def elf_architecture(path):
    with open(path, "rb") as f:
        header = f.read(20)
    if header[:4] != b"\x7fELF":
        raise Failure(f"{path} is not an ELF executable")
    return ELF_MACHINE.get(int.from_bytes(header[18:20], "little"), "unknown")


def rie_binary():
    import samcli

    host = "arm64" if os.uname().machine in ("aarch64", "arm64") else "x86_64"
    path = os.path.join(os.path.dirname(samcli.__file__), "local", "rapid", f"aws-lambda-rie-{host}")
    if not os.access(path, os.X_OK):
        raise Failure(f"the Runtime Interface Emulator is not at {path}")
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bootstrap_for(function, options):
    if options.bootstrap:
        path = options.bootstrap
    elif options.native:
        path = os.path.join(ROOT, "target", "lambda", function.crate, "bootstrap")
    else:
        path = os.path.join(options.build_dir, function.logical_id, "bootstrap")
    if not os.path.exists(path):
        hint = (
            "run `cargo lambda build` (x86_64) first" if options.native
            else "run `sam build` (or `SAM_BUILD_MODE=debug sam build`) first"
        )
        raise Failure(f"{path} does not exist: {hint}")
    arch = elf_architecture(path)
    if options.native and arch != "x86_64":
        raise Failure(
            f"{path} is an {arch} binary (sam build puts its arm64 builds there too): "
            "run `cargo lambda build` for x86_64 first"
        )
    return os.path.abspath(path), arch


class Emulator:
    """The official RIE running one function's bootstrap on free loopback ports."""

    def __init__(self, function, bootstrap, arch, log_path):
        self.function = function
        self.log_path = log_path
        self.scratch = tempfile.TemporaryDirectory(prefix="rie-")
        runtime = bootstrap
        if arch == "arm64" and os.uname().machine not in ("aarch64", "arm64"):
            runtime = os.path.join(self.scratch.name, "bootstrap")
            with open(runtime, "w") as f:
                f.write(f'#!/bin/sh\nexec qemu-aarch64 -L /usr/aarch64-linux-gnu "{bootstrap}" "$@"\n')
            os.chmod(runtime, 0o755)
        self.port = free_port()
        env = function.environment(os.path.dirname(bootstrap))
        self.checker = None
        if IAM["log"]:
            # Every AWS call through the function's own IAM checker (tests/iam.py).
            import iam

            try:
                policy = iam.Policy.of(function.template, function.logical_id, function.resolver)
            except iam.PolicyError as e:
                raise Failure(f"{function.logical_id}'s policy: {e}")
            self.checker = iam.Checker(function.logical_id, policy, iam.upstreams_from_env(env),
                                       IAM["log"], IAM["run"])
            for suffix in ("DYNAMODB", "SNS", "SQS", "KMS", "SECRETS_MANAGER"):
                env[f"AWS_ENDPOINT_URL_{suffix}"] = self.checker.url()
            env.pop("AWS_ENDPOINT_URL", None)
        self.log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [
                rie_binary(),
                "--runtime-interface-emulator-address", f"127.0.0.1:{self.port}",
                "--runtime-api-address", f"127.0.0.1:{free_port()}",
                runtime,
            ],
            env=env, cwd=self.scratch.name, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise Failure(f"the emulator did not start; its log: {self.log_text()}")
                time.sleep(0.05)

    def invoke(self, event):
        """(HTTP status, result bytes, seconds taken) of one invocation."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{INVOKE_PATH}", data=event, method="POST"
        )
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=self.function.timeout + 60) as response:
                return response.status, response.read(), time.perf_counter() - started
        except urllib.error.HTTPError as e:
            return e.code, e.read(), time.perf_counter() - started

    def runtime_pid(self):
        """The bootstrap's pid (the emulator's child), for its peak memory."""
        for children in glob.glob(f"/proc/{self.process.pid}/task/*/children"):
            try:
                with open(children) as f:
                    pids = f.read().split()
            except OSError:
                continue
            if pids:
                return int(pids[0])
        return None

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        self.scratch.cleanup()
        if self.checker:
            self.checker.stop()

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")


def read_event(path):
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as f:
        return f.read()


def env_overrides(options):
    if not options.env_vars:
        return {}
    with open(options.env_vars) as f:
        data = json.load(f)
    return {k: {n: str(v) for n, v in vs.items()} for k, vs in data.items()}


def parameters(options):
    out = {}
    for pair in options.parameter_overrides or []:
        name, sep, value = pair.partition("=")
        if not sep:
            raise Failure(f"--parameter-overrides takes NAME=VALUE, got {pair!r}")
        out[name] = value
    return out


def load_function(options, name, extra_env=None):
    template = load_template(options.template)
    overrides = env_overrides(options)
    logical_id = find_function(template, name)
    if extra_env:
        overrides.setdefault(logical_id, {}).update(extra_env)
    return Function(template, logical_id, parameters(options), overrides)


def logs_dir():
    path = os.path.join(ROOT, ".deps", "logs")
    os.makedirs(path, exist_ok=True)
    return path


def cmd_invoke(options):
    function = load_function(options, options.function)
    bootstrap, arch = bootstrap_for(function, options)
    log_path = os.path.join(logs_dir(), f"invoke-{function.logical_id}.log")
    emulator = Emulator(function, bootstrap, arch, log_path)
    try:
        status, body, _ = emulator.invoke(read_event(options.event))
    finally:
        emulator.stop()
    sys.stderr.write(emulator.log_text())
    if status != 200:
        print(f"rie.py: the invocation failed (emulator answered {status}): see the log above",
              file=sys.stderr)
        return 1
    sys.stdout.write(body.decode(errors="replace") + "\n")
    return 0


def check(expected, result):
    """What is wrong with one function result, or None."""
    if "result" in expected:
        return None if result == expected["result"] else f"result {result}, expected {expected['result']}"
    if not isinstance(result, dict) or "statusCode" not in result:
        return f"not an API Gateway response: {result}"
    status = result["statusCode"]
    try:
        body = json.loads(result.get("body") or "null")
    except ValueError:
        return f"{status} with a body that is not JSON"
    headers = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
    problems = []
    if status != expected["status"]:
        problems.append(f"status {status}, expected {expected['status']}")
    if "error" in expected:
        if not isinstance(body, dict) or set(body) != {"error", "error_description"}:
            problems.append(f"error body {body}, expected exactly error and error_description")
        elif body["error"] != expected["error"]:
            problems.append(f"error {body['error']}, expected {expected['error']}")
    for key in expected.get("has", []):
        if not isinstance(body, dict) or key not in body:
            problems.append(f"no {key} in the body")
    if "body" in expected and body != expected["body"]:
        problems.append(f"body {body}, expected {expected['body']}")
    for name, value in expected.get("headers", {}).items():
        got = headers.get(name) or ""
        if not (got.startswith(value[:-1]) if value.endswith("*") else got == value):
            problems.append(f"header {name}: {got!r}, expected {value!r}")
    return "; ".join(problems) or None


def summary(result):
    if isinstance(result, dict) and "statusCode" in result:
        try:
            body = json.loads(result.get("body") or "null")
        except ValueError:
            body = None
        code = body.get("error") if isinstance(body, dict) else None
        return f"{result['statusCode']} {code}" if code else str(result["statusCode"])
    return json.dumps(result)


def event_function(name, crates):
    """The crate an event file belongs to: the longest crate name its name starts with."""
    matches = [c for c in crates if name == c or name.startswith(c + "-")]
    if not matches:
        raise Failure(f"events/{name}.json belongs to no function")
    return max(matches, key=len)


def cmd_events(options):
    with open(options.expect) as f:
        expectations = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
    template = load_template(options.template)
    crates = {crate_of(resource): logical_id for logical_id, resource in functions_of(template).items()}
    events = sorted(os.path.splitext(os.path.basename(p))[0]
                    for p in glob.glob(os.path.join(ROOT, "events", "*.json")))
    missing = sorted(set(events) ^ set(expectations))
    if missing:
        raise Failure(f"events and {options.expect} disagree on: {', '.join(missing)}")
    by_function = {}
    for name in events:
        by_function.setdefault(event_function(name, crates), []).append(name)
    failed = 0
    for crate, names in sorted(by_function.items()):
        function = load_function(options, crate)
        bootstrap, arch = bootstrap_for(function, options)
        log_path = os.path.join(logs_dir(), f"rie-{function.logical_id}.log")
        emulator = Emulator(function, bootstrap, arch, log_path)
        failed_before = failed
        try:
            for name in names:
                status, body, seconds = emulator.invoke(read_event(os.path.join(ROOT, "events", f"{name}.json")))
                try:
                    result = json.loads(body) if status == 200 else None
                except ValueError:
                    result = None
                problem = (f"the emulator answered {status}" if status != 200
                           else check(expectations[name], result))
                line = f"events/{name}.json -> {function.logical_id} ({arch}): " + (
                    f"{summary(result)} in {seconds * 1000:.0f} ms" if status == 200 else f"HTTP {status}")
                print(line + (f"  WRONG: {problem}" if problem else ""), flush=True)
                failed += problem is not None
        finally:
            emulator.stop()
        if failed > failed_before:
            print(f"  log of {function.logical_id} ({log_path}):\n{emulator.log_text()}", file=sys.stderr)
    print(f"{len(events) - failed} events answered as expected, {failed} wrong")
    return 1 if failed else 0


def cmd_misconfigured(options):
    name, sep, value = options.setting.partition("=")
    if not sep:
        raise Failure(f"expected NAME=VALUE, got {options.setting!r}")
    function = load_function(options, options.function, {name: value})
    bootstrap, arch = bootstrap_for(function, options)
    log_path = os.path.join(logs_dir(), f"rie-{function.logical_id}-misconfigured.log")
    emulator = Emulator(function, bootstrap, arch, log_path)
    try:
        status, _, _ = emulator.invoke(read_event(os.path.join(ROOT, "events", f"{function.crate}.json")))
    finally:
        emulator.stop()
    log = emulator.log_text()
    # Everything the function itself wrote: the emulator's own lines carry "(rapid)" and the
    # request markers START/END/REPORT.
    own = [l for l in log.splitlines()
           if l.strip() and "(rapid)" not in l and not re.match(r"(START|END|REPORT) RequestId", l)]
    problems = []
    if status == 200:
        problems.append("the invocation succeeded")
    if "INIT RTDONE(status: error)" not in log and "Runtime.ExitError" not in log:
        problems.append("the emulator saw no failed init")
    if len(own) != 1:
        problems.append(f"the function logged {len(own)} lines, expected one")
    elif name not in own[0] or "cold start failed" not in own[0]:
        problems.append(f"its log line does not name {name}: {own[0]}")
    verdict = "WRONG: " + "; ".join(problems) if problems else "stopped at cold start as it should"
    print(f"{function.logical_id} with {name}={value!r} ({arch}): HTTP {status}, {verdict}")
    for line in own:
        print(f"  {line}")
    if problems:
        print(log, file=sys.stderr)
    return 1 if problems else 0


def cmd_cold_start(options):
    results = {}
    for name in options.functions:
        function = load_function(options, name)
        bootstrap, arch = bootstrap_for(function, options)
        event = read_event(os.path.join(ROOT, "events", f"{function.crate}.json"))
        runs = []
        for run in range(options.runs):
            log_path = os.path.join(logs_dir(), f"cold-{function.crate}-{run}.log")
            emulator = Emulator(function, bootstrap, arch, log_path)
            try:
                status, first, first_s = emulator.invoke(event)
                _, _, warm_s = emulator.invoke(event)
                pid = emulator.runtime_pid()
                rss = peak_rss_kib(pid) if pid else None
            finally:
                emulator.stop()
            log = emulator.log_text()
            init = re.search(r"INIT REPORT\(durationMs: ([0-9.]+)\)", log)
            durations = [float(d) for d in re.findall(r"^REPORT RequestId: \S+\t(?:Init Duration: [0-9.]+ ms\t)?Duration: ([0-9.]+) ms", log, re.M)]
            runs.append({
                "init_ms": float(init.group(1)) if init else None,
                "first_ms": first_s * 1000,
                "first_duration_ms": durations[0] if durations else None,
                "warm_ms": durations[1] if len(durations) > 1 else warm_s * 1000,
                "status": outcome(status, first),
                "rss_kib": rss,
            })
        timed = [r for r in runs if r["init_ms"] is not None]
        results[function.crate] = {
            "arch": arch,
            "init_ms": statistics.median(r["init_ms"] for r in timed) if timed else None,
            "first_ms": statistics.median(r["first_ms"] for r in runs),
            "warm_ms": statistics.median(r["warm_ms"] for r in runs),
            "status": runs[0]["status"],
            "rss_kib": max((r["rss_kib"] or 0) for r in runs) or None,
            "runs": runs,
        }
        print(f"{function.crate}: init {results[function.crate]['init_ms']} ms", file=sys.stderr)
    with open(options.out, "w") as f:
        json.dump(results, f, indent=1)
    return 0


def outcome(status, body):
    if status != 200:
        return f"HTTP {status}"
    try:
        result = json.loads(body)
    except ValueError:
        return "not JSON"
    if isinstance(result, dict) and "statusCode" in result:
        return result["statusCode"]
    return "error" if isinstance(result, dict) and "errorType" in result else "ok"


def peak_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cmd_iam_report(options):
    import iam_report

    template = load_template(options.template)
    problems = iam_report.report(options.logs, template, sys.stdout)
    print(f"IAM check: {problems} problem(s)" if problems else "IAM check: every call granted, every grant used or justified")
    return 1 if problems else 0


def main(argv):
    parser = argparse.ArgumentParser(
        prog="rie.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--template", default=os.path.join(ROOT, "template.yaml"))
    common.add_argument("--build-dir", default=os.path.join(ROOT, ".aws-sam", "build"))
    common.add_argument("--native", action="store_true")
    common.add_argument("--bootstrap")
    common.add_argument("--env-vars")
    common.add_argument("--parameter-overrides", nargs="+", metavar="NAME=VALUE")
    common.add_argument("--iam-log", help="hold every AWS call to the function's policy, logged here")
    common.add_argument("--iam-run", default="local", help="the run's name in the IAM log")
    commands = parser.add_subparsers(dest="command", required=True)
    invoke = commands.add_parser("invoke", parents=[common])
    invoke.add_argument("function")
    invoke.add_argument("event")
    events = commands.add_parser("events", parents=[common])
    events.add_argument("--expect", default=os.path.join(ROOT, "tests", "event-expectations.json"))
    misconfigured = commands.add_parser("misconfigured", parents=[common])
    misconfigured.add_argument("function")
    misconfigured.add_argument("setting")
    cold = commands.add_parser("cold-start", parents=[common])
    cold.add_argument("runs", type=int)
    cold.add_argument("out")
    cold.add_argument("functions", nargs="+")
    report = commands.add_parser("iam-report", parents=[common])
    report.add_argument("logs", nargs="+")
    options = parser.parse_args(argv)
    IAM["log"], IAM["run"] = options.iam_log, options.iam_run
    try:
        return {
            "invoke": cmd_invoke,
            "events": cmd_events,
            "misconfigured": cmd_misconfigured,
            "cold-start": cmd_cold_start,
            "iam-report": cmd_iam_report,
        }[options.command](options)
    except Failure as e:
        print(f"rie.py: {e}", file=sys.stderr)
        return 2



if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
