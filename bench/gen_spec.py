#!/usr/bin/env python3
"""Writes a cluster spec with N nodes (3 etcd members, the rest workers) on a
/16, with a browser load of 10 per worker, for the render benchmark."""
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
out = [
    '[cluster]\nname = "bench"\ndomain = "bench.example"\n'
    'ssh_authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchKey bench@host"]\n',
    '[network]\ninterface = "eth0"\nsubnet = "10.20.0.0/16"\nserver = "10.20.0.2"\n'
    'gateway = "10.20.0.1"\ndns = ["10.20.0.1"]\ndynamic_range = ["10.20.255.0", "10.20.255.250"]\n',
    '[boot]\nflatcar = "4081.2.0"\nconsole = ["ttyS0,115200n8"]\n',
]
for i in range(n):
    ip = 10 + i
    roles = '["etcd"]' if i < 3 else '["worker"]'
    out.append(
        f'[[nodes]]\nname = "n{i:05d}"\nmac = "52:54:{(i >> 24) & 255:02x}:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}"\n'
        f'ip = "10.20.{ip >> 8}.{ip & 255}"\nroles = {roles}\nlabels = {{ rack = "r{i // 40}" }}\n'
    )
workers = max(n - 3, 1)
out.append(f'[load]\nimage = "registry.bench/browser:1"\nhost = "mw.bench"\nbrowsers = {workers * 10}\nviewers = true\n')
print("\n".join(out))
