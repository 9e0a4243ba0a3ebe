#!/bin/bash
# check_completion.sh — the bash completion of custody (dist/) completes
# commands, a group's sub-commands, options and --format values, asking the
# custody binary under test (its directory first on PATH).
#     check_completion.sh COMPLETION_FILE CUSTODY_DIR
set -u
. "$1"
PATH=$2:$PATH
fail=0

complete_line() {
	# complete the last word of "$*" as bash would after <TAB>
	COMP_WORDS=($*)
	[[ $* == *" " ]] && COMP_WORDS+=("")
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMPREPLY=()
	_custody
	echo "${COMPREPLY[*]}"
}

expect() {
	local line=$1 want=$2 got
	got=$(complete_line "$line")
	for w in $want; do
		if [[ " $got " != *" $w "* ]]; then
			echo "FAIL: '$line<TAB>' gave '$got', missing '$w'" >&2
			fail=1
		fi
	done
}
expect_exact() {
	local line=$1 want=$2 got
	got=$(complete_line "$line")
	if [[ $got != "$want" ]]; then
		echo "FAIL: '$line<TAB>' gave '$got', expected '$want'" >&2
		fail=1
	fi
}

expect "custody " "init keys grant principal lockdown unlock token status audit vault demo"
expect_exact "custody gr" "grant"
expect "custody grant " "seal import list show revoke"
expect "custody audit " "list export verify tail report ack-conflict"
expect "custody " "config reload witness"
expect_exact "custody config " "check"
expect "custody witness serve --" "--state --listen --tls-cert --tls-key"
expect_exact "custody grant seal --broker-k" "--broker-key"
expect "custody grant seal --" "--tenant-id --client-secret-file --not-after --output --config"
expect "custody token --format " "raw json header env"
expect_exact "custody --vers" "--version"
expect "custody --config /etc/custody.json grant " "seal import"
expect_exact "custody token --tenant " ""
[ $fail -eq 0 ] && echo "ok: custody's bash completion completes commands, sub-commands, options and values"
exit $fail
