#!/bin/sh
# deploy.sh - git-pull deploy: fast-forward a checked-out work tree when the
# configured branch is pushed.
#
# Inputs
#   args  --ref=<git ref>    required, e.g. refs/heads/main (from the payload)
#         --repo=<name>      optional, only printed for the log
#         anything else is an error (exit 2).
#   env   DEPLOY_DIR         required: path of a git work tree whose checked-out
#                            branch tracks the remote branch to deploy
#                            (a relative path is taken from the working dir,
#                            by default the config file's directory)
#         DEPLOY_BRANCH      branch to deploy (default: main)
#   stdin ignored.
# Exit    0  deployed, or skipped because the ref is another branch/tag
#         1  the work tree has a different branch (or detached HEAD) checked out
#         2  usage/configuration error
#         other non-zero: git's own status (e.g. 128: not fast-forwardable,
#            network or auth failure)
#
# webhook.yaml (from the shipped one; relative paths start at its directory):
#   programs:
#     deploy:
#       command: handlers/deploy.sh
#       params: [ref, repo]           # -> --ref=refs/heads/main --repo=acme/app
#       timeout: 10m
#       env:
#         DEPLOY_DIR: ${DEPLOY_DIR:-/srv/app}
#         DEPLOY_BRANCH: main
#   mappings:
#     github:
#       push:
#         params:                     # must extract every param deploy lists
#                                     # (the shipped one also has `author`)
#           ref: payload.ref
#           repo: payload.repository.full_name
#         rules:
#           - if: ref == "refs/heads/main" && str::regex_matches(repo, "^acme/")
#             run: deploy
#
# The daemon clears the environment: git runs with the daemon's HOME (for
# ~/.gitconfig, ~/.ssh) and must be able to fetch non-interactively.
set -eu

ref=
ref_set=
repo=
while [ $# -gt 0 ]; do
    case "$1" in
        --ref=*)  ref=${1#--ref=}; ref_set=1 ;;
        --repo=*) repo=${1#--repo=} ;;
        *) printf 'deploy.sh: unknown argument: %s\n' "$1" >&2; exit 2 ;;
    esac
    shift
done

if [ -z "${DEPLOY_DIR-}" ]; then
    printf 'deploy.sh: DEPLOY_DIR is not set\n' >&2
    exit 2
fi
if [ -z "$ref_set" ]; then
    printf 'deploy.sh: missing --ref=<ref>\n' >&2
    exit 2
fi
# (prints "false", exit 0, for a bare repo or a .git dir, so compare output)
wt=$(git -C "$DEPLOY_DIR" rev-parse --is-inside-work-tree) || wt=
if [ "$wt" != true ]; then
    printf 'deploy.sh: DEPLOY_DIR is not a git work tree: %s\n' "$DEPLOY_DIR" >&2
    exit 2
fi
branch=${DEPLOY_BRANCH:-main}

if [ "$ref" != "refs/heads/$branch" ]; then
    printf 'skipping %s: not refs/heads/%s\n' "$ref" "$branch"
    exit 0
fi

# Never hang waiting for a password prompt.
GIT_TERMINAL_PROMPT=0
export GIT_TERMINAL_PROMPT

current=$(git -C "$DEPLOY_DIR" symbolic-ref --quiet --short HEAD) || current=
if [ "$current" != "$branch" ]; then
    printf 'deploy.sh: %s has %s checked out, expected %s\n' \
        "$DEPLOY_DIR" "${current:-a detached HEAD}" "$branch" >&2
    exit 1
fi

printf 'deploying %s %s into %s\n' "${repo:-(repo not given)}" "$ref" "$DEPLOY_DIR"
git -C "$DEPLOY_DIR" pull --ff-only
printf 'HEAD is now %s\n' "$(git -C "$DEPLOY_DIR" rev-parse HEAD)"
