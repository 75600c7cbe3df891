#!/usr/bin/env bash
# Starts the S3-protocol servers the archive's S3 tests use — moto's server mode (PyPI,
# Apache-2.0) in the tests' virtualenv — unless they already answer, and prints shell `export`
# lines for the tests (eval them); everything else goes to stderr.
#
# Two servers, each with the bucket `sluice-test`:
# - the data server (SLUICE_TEST_S3_ENDPOINT) takes any credentials: moto checks signatures
#   against the decoded path, so a signed key with '=' in it (every Hive-layout key; signed
#   correctly as %3D, as S3 does) would be refused by a checking moto;
# - the checking server (SLUICE_TEST_S3_AUTH_ENDPOINT) knows one user, `sluice`, and its key
#   (SLUICE_TEST_S3_ACCESS_KEY_ID and SLUICE_TEST_S3_SECRET_ACCESS_KEY), made before
#   authentication is switched on, so a wrong secret or a missing bucket gets the answers real
#   S3 gives.
# Both take multipart uploads of parts from 1 KiB (S3's least is 5 MiB), so the tests upload
# small files in several parts.
# Their state lives in memory; the key and the servers' logs in ${SLUICE_MOTO_DIR:-/tmp/sluice-moto}.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${SLUICE_MOTO_PORT:-19000}
auth_port=$((port + 1))
dir=${SLUICE_MOTO_DIR:-/tmp/sluice-moto}
python=${SLUICE_TEST_PYTHON:-$PWD/target/test-python/bin/python}
endpoint="http://127.0.0.1:$port"
auth_endpoint="http://127.0.0.1:$auth_port"

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$auth_port") 2>/dev/null; }

if [ ! -x "$python" ]; then
  python3 -m venv target/test-python
  python=$PWD/target/test-python/bin/python
fi
"$python" -c "import moto.server, boto3" 2>/dev/null \
  || "$(dirname "$python")/pip" install --quiet --disable-pip-version-check "moto[server]==5.2.1" >&2

if ! answers || [ ! -s "$dir/env" ]; then
  if answers; then
    echo "ports $port and $auth_port answer but $dir/env is missing: stop those servers or set SLUICE_MOTO_PORT" >&2
    exit 1
  fi
  mkdir -p "$dir"
  rm -f "$dir/env"
  # Detached, in a session of its own, holding none of this shell's descriptors.
  "$python" - "$dir" "$port" "$auth_port" <<'PY'
import os, subprocess, sys
directory = sys.argv[1]
os.environ["S3_UPLOAD_PART_MIN_SIZE"] = "1024"
for port in sys.argv[2:]:
    with open(f"{directory}/server-{port}.log", "ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", port],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True,
            start_new_session=True)
PY
  for _ in $(seq 1 150); do
    answers && break
    sleep 0.1
  done
  answers || { echo "moto did not start on ports $port and $auth_port: see $dir/server-*.log" >&2; exit 1; }
  "$python" - "$endpoint" "$auth_endpoint" "$dir/env" <<'PY'
import json, sys, urllib.request
import boto3
endpoint, auth_endpoint, out = sys.argv[1], sys.argv[2], sys.argv[3]
session = boto3.session.Session(aws_access_key_id="setup", aws_secret_access_key="setup",
                                region_name="us-east-1")
session.client("s3", endpoint_url=endpoint).create_bucket(Bucket="sluice-test")
iam = session.client("iam", endpoint_url=auth_endpoint)
iam.create_user(UserName="sluice")
iam.put_user_policy(UserName="sluice", PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17",
     "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="sluice")["AccessKey"]
session.client("s3", endpoint_url=auth_endpoint).create_bucket(Bucket="sluice-test")
# From here on every request to the checking server must be signed by a known key.
urllib.request.urlopen(urllib.request.Request(
    f"{auth_endpoint}/moto-api/reset-auth", data=b"0", method="POST",
    headers={"Content-Type": "text/plain"})).read()
with open(out + ".tmp", "w") as env:
    env.write(f"export SLUICE_TEST_S3_ENDPOINT={endpoint}\n")
    env.write(f"export SLUICE_TEST_S3_AUTH_ENDPOINT={auth_endpoint}\n")
    env.write("export SLUICE_TEST_S3_BUCKET=sluice-test\n")
    env.write(f"export SLUICE_TEST_S3_ACCESS_KEY_ID={key['AccessKeyId']}\n")
    env.write(f"export SLUICE_TEST_S3_SECRET_ACCESS_KEY={key['SecretAccessKey']}\n")
PY
  mv "$dir/env.tmp" "$dir/env"
fi
cat "$dir/env"
