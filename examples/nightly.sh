#!/bin/sh
# edgekit's nightly as cron runs it (examples/nightly.cron). Prints nothing when the night passed, so cron mails
# nothing; otherwise the night's verdict line and the top of tonight's summary (its first 40 lines: the verdict and
# the flags, a regression, a failed deploy, then the tables) or, when the night stopped before writing
# its report (a missing key, a store it cannot open, the previous night still running), tonight's own error: never
# an older night's summary. The night's output is appended to nightly.log; the exit status is the nightly's.
#   EDGEKIT_CHECKOUT  the edgekit checkout, after `make setup` (default ~/edgekit)
#   EDGEKIT_REPORTS   where the reports and the log go (default ~/edgekit-reports)
#   EDGEKIT_NIGHTLY_TARGETS  the --targets list (default pi4,pi5); EDGEKIT_STORE as for every command
set -u
reports=${EDGEKIT_REPORTS:-$HOME/edgekit-reports}
checkout=${EDGEKIT_CHECKOUT:-$HOME/edgekit}
targets=${EDGEKIT_NIGHTLY_TARGETS:-pi4,pi5}
mkdir -p "$reports" || exit 1
cd "$checkout" || exit 1
summary=$reports/nightly.md
tonight=$reports/nightly-tonight.log
# the lock first, for the whole night: a second night started meanwhile must not truncate this one's log or remove
# its summary (flock on fd 9, held until the script ends; 75: the lock is held, nothing was started)
exec 9>>"$reports/.nightly.lock" || exit 1
if ! flock -n 9; then
    echo "edgekit nightly: not started: the previous night still holds $reports/.nightly.lock"
    exit 75
fi
rm -f "$summary"
.venv/bin/edgekit nightly --recipes recipes/ --targets "$targets" \
    --html "$reports/nightly-$(date +%F).html" --markdown "$summary" > "$tonight" 2>&1 9>&-
rc=$?
{ echo "== $(date '+%F %T') edgekit nightly, exit $rc"; cat "$tonight"; } >> "$reports/nightly.log"
[ "$rc" -eq 0 ] && exit 0
if [ -s "$summary" ]; then
    # the verdict, then the summary's top: its flags come first, its tables after them (its tail had no flag)
    grep '^nightly: ' "$tonight" | tail -n 1
    head -n 40 "$summary"
    lines=$(wc -l < "$summary")
    [ "$lines" -gt 40 ] && echo "… and $((lines - 40)) more lines in $summary"
else
    echo "edgekit nightly failed (exit $rc) before writing its report; its last lines ($tonight):"
    tail -n 20 "$tonight"
fi
exit "$rc"
