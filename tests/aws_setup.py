#!/usr/bin/env python3
"""Prepares moto's SNS, KMS, SQS and Secrets Manager as an operator prepares AWS for a deploy (tests/run, bench/report.sh).

    aws_setup.py MOTO_URL SEED_IN SEED_OUT

On MOTO_URL (dummy credentials): a GCM platform application and a platform endpoint for every
device of SEED_IN (SEED_IN is written to SEED_OUT with those endpoint ARNs), and an
ECC_NIST_P256 signing key, the notification queue and its dead-letter queue, and the OP secret
(what the template's OpSecret is). Prints the environment for the functions as `NAME=value`
lines: SNS_PLATFORM_APP_GCM, KMS_KEY_ID, SQS_QUEUE_URL_<logical id> for each queue and
SECRET_ARN_OpSecret (tests/rie.py reads them; ciba-admin import takes the secret's ARN). Runs under the moto venv's python (it has boto3).
"""
import json
import secrets
import string
import sys

import boto3


def main():
    url, seed_in, seed_out = sys.argv[1:4]

    def client(service):
        return boto3.client(
            service,
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    sns = client("sns")
    app = sns.create_platform_application(
        Name="ciba-local", Platform="GCM", Attributes={"PlatformCredential": "bench-key"}
    )["PlatformApplicationArn"]
    with open(seed_in) as f:
        seed = json.load(f)
    for device in seed.get("devices", []):
        token = f"bench-push-token-{device['device_id']}"
        device["platform"] = "GCM"
        device["push_token"] = token
        device["endpoint_arn"] = sns.create_platform_endpoint(
            PlatformApplicationArn=app, Token=token
        )["EndpointArn"]
    with open(seed_out, "w") as f:
        json.dump(seed, f, indent=1)
    key = client("kms").create_key(
        KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256", Description="ciba local signing key"
    )["KeyMetadata"]["KeyId"]
    # What the template's OpSecret generates: 64 letters and digits.
    alphabet = string.ascii_letters + string.digits
    secret = client("secretsmanager").create_secret(
        Name=f"ciba-op-secret-{secrets.token_hex(4)}",
        SecretString="".join(secrets.choice(alphabet) for _ in range(64)),
    )["ARN"]
    print(f"SECRET_ARN_OpSecret={secret}")
    sqs = client("sqs")
    for logical_id in ("NotificationQueue", "NotificationDeadLetterQueue"):
        queue_url = sqs.create_queue(QueueName=f"ciba-{logical_id}")["QueueUrl"]
        print(f"SQS_QUEUE_URL_{logical_id}={queue_url}")
    print(f"SNS_PLATFORM_APP_GCM={app}")
    print(f"KMS_KEY_ID={key}")


if __name__ == "__main__":
    main()
