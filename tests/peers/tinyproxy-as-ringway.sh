#!/bin/bash
# Pretends to be ringway for harness sanity checks: runs tinyproxy on a free port.
drv=epoll
while [ $# -gt 0 ]; do case "$1" in --driver) [ "$2" = uring ] && drv=io_uring; shift 2;; *) shift;; esac; done
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
d=$(mktemp -d)
cat > $d/conf <<EOC
Port $port
Listen 127.0.0.1
Timeout 600
MaxClients 2000
LogLevel Critical
ViaProxyName "ringway"
EOC
( for i in $(seq 200); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && { echo "ringway listening on 127.0.0.1:$port ($drv, 1 thread)"; break; }; sleep 0.05; done ) &
exec tinyproxy -d -c $d/conf
