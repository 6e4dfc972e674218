#!/usr/bin/env bash
# salara's main job, end to end, on the test PBX: a stand-in CRM on 127.0.0.1:3000,
# salara on 127.0.0.1:5058; ask for states, place a real call to the SIP phone,
# send it a message, route an incoming call by the CRM, and show the call events
# the CRM received. Installs what is missing first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >/dev/null
.venv/bin/python -m testpbx start

mkdir -p .demo
install -m 600 salara.conf.example .demo/salara.conf
.venv/bin/python scripts/democrm.py 3000 >.demo/crm.log 2>&1 &
crm_pid=$!
SALARA_OUTBOX_PATH=.demo/outbox.db .venv/bin/salara -c .demo/salara.conf serve >.demo/salara.log 2>&1 &
salara_pid=$!
trap 'kill $salara_pid $crm_pid 2>/dev/null; wait 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -sf http://127.0.0.1:5058/ready >/dev/null && break
  sleep 0.1
done

ask() {
  printf '\n$ curl -d %q http://127.0.0.1:5058/\n' "$1"
  curl -s -d "$1" http://127.0.0.1:5058/
  echo
}
echo "salara is serving on http://127.0.0.1:5058 (log: .demo/salara.log)"
ask '{"exten":"9001"}'
ask '{"peer":"8001"}'
ask '{"operator":"8001","phone":"9002"}'
sleep 2
channel=$(.venv/bin/salara -c .demo/salara.conf send command core show channels concise 2>/dev/null \
  | grep -o '^PJSIP/8001-[0-9a-f]*' | head -1 || true)
[ -n "$channel" ] && ask "{\"chan\":\"$channel\"}"
sleep 5
ask '{"operator":"8001","phone":"8002","msg":"Hello from the CRM"}'
ask '{"exten":"7777"}'
printf '\n$ curl "http://127.0.0.1:5058/?exten=9001"\n'
curl -s "http://127.0.0.1:5058/?exten=9001"
echo

echo
echo "An incoming call from 5551234 enters the routing extension 5100 (AGI to salara):"
.venv/bin/python - <<'PY'
from testpbx import pbx

# The routing extension reaches salara at the dialplan global SALARA_AGI.
pbx.ami_command("Action: Setvar", "Variable: SALARA_AGI", "Value: 127.0.0.1:4573")
pbx.ami_command("Action: Originate", "Channel: Local/5100@phones", 'CallerID: "Customer" <5551234>',
                "Application: Wait", "Data: 3", "Async: true")
PY
sleep 4
grep -h 'salara.routing.script: route ' .demo/salara.log | sed 's/^.*salara.routing.script: /  salara: /' | tail -1 || true

echo
echo "What the CRM received (.demo/crm.log):"
sleep 1
sed 's/^/  /' .demo/crm.log
echo
echo "The test PBX keeps running; stop it with: .venv/bin/python -m testpbx stop"
