#!/bin/sh
# Give the code node's sandbox a cgroup it may write, inside a container run as root with CAP_SYS_ADMIN
# and its own cgroup namespace (docs/deployment.md, "User code"); then exec the command given, if any.
#
# Afterwards SANDBOX_CGROUP_PARENT=/sandbox names it: the sandbox creates one cgroup per run below it.
#   cgroup v2: the no-internal-process rule lets a cgroup hand memory and pids limits to children only
#     while it holds no process itself, so every process of the container moves into the leaf /service
#     first (as Docker's own docker-in-docker entrypoint does; later `docker exec`s join it), then the
#     container's cgroup and /sandbox enable the two controllers.
#   cgroup v1: /sandbox in the memory and in the pids hierarchy.
# Docker mounts the cgroup filesystem read-only; CAP_SYS_ADMIN (and no AppArmor confinement) lets this
# remount it writable. Running it again changes nothing.
set -eu

root=/sys/fs/cgroup

writable() {
    if ! mkdir -p "$1/sandbox" 2>/dev/null; then
        mount -o remount,rw "$1" 2>/dev/null || mount -o remount,bind,rw "$1"
        mkdir -p "$1/sandbox"
    fi
}

if [ -f "$root/cgroup.controllers" ]; then
    writable "$root"
    mkdir -p "$root/service"
    for _ in 1 2 3; do  # processes started meanwhile are moved in the next round
        for pid in $(cat "$root/cgroup.procs"); do
            echo "$pid" >"$root/service/cgroup.procs" 2>/dev/null || true
        done
    done
    echo "+memory +pids" >"$root/cgroup.subtree_control"
    echo "+memory +pids" >"$root/sandbox/cgroup.subtree_control"
else
    for controller in memory pids; do
        writable "$root/$controller"
    done
fi

export SANDBOX_CGROUP_PARENT=/sandbox
if [ "$#" -gt 0 ]; then
    exec "$@"
fi
