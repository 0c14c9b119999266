# A user story as a shell script: submit, wait, read the CSV with head and wc.
import os

from fshelpers import PROJECT, bash, emu_archive, zip_entries

SCRIPT = r'''
set -euo pipefail
exports="$MNT/projects/$PROJECT/exports"
filter='{"recent":"today","dump_columns":["id","time","sip","attack"],"attacks":["sqli"]}'

exec 3<>"$exports/new"
printf '%s' "$filter" >&3
read -r job <&3
exec 3>&-
case "$job" in
    error:*) echo "submit failed: $job" >&2; exit 1 ;;
esac

state=$(cat "$exports/$job/.wait")
[ "$state" = success ] || { echo "job ended $state" >&2; exit 1; }
grep -qx success "$exports/$job/status"

header=$(head -n 1 "$exports/$job/events.csv")
rows=$(( $(wc -l < "$exports/$job/events.csv") - 1 ))
bad=$(tail -n +2 "$exports/$job/events.csv" | cut -d, -f4 | grep -vcx sqli || true)
printf '%s\n%s\n%s\n%s\n' "$job" "$header" "$rows" "$bad"
'''


def test_shell_script_user_story(mnt, emu):
    emu.config(rows=75)
    r = bash(SCRIPT, env=dict(os.environ, MNT=mnt.mountpoint, PROJECT=PROJECT), timeout=60)
    job, header, rows, bad = r.stdout.decode().splitlines()
    assert header == "id,time,sip,attack"
    assert int(rows) == 75
    assert int(bad) == 0
    z = zip_entries(emu_archive(emu, job))
    assert z["events.csv"][0].decode().count("\n") - 1 == int(rows)
    assert [e["task_id"] for e in emu.calls("submit")] == [job]
