"""A rkproxy process of this suite's own, to restart under a client's connection pool.

`cargo xtask clients` writes its configuration (the key-prefixed tenant on the standalone pool,
allowed to `USE cluster`, on a port no other suite uses) and passes RKPROXY_CLIENTS_RESTART_BINARY,
_RESTART_CONFIG and _RESTART_PROXY (its address). Every wait here is bounded."""

import os
import signal
import socket
import subprocess
import time

START_SECONDS = 30
STOP_SECONDS = 15


class ProxyProcess:
    def __init__(self):
        self.binary = os.environ["RKPROXY_CLIENTS_RESTART_BINARY"]
        self.config = os.environ["RKPROXY_CLIENTS_RESTART_CONFIG"]
        host, port = os.environ["RKPROXY_CLIENTS_RESTART_PROXY"].rsplit(":", 1)
        self.address = (host, int(port))
        self.process = None

    def start(self):
        """Starts rkproxy and waits until it accepts connections. Without the suite's RKPROXY_*
        variables: rkproxy reads every RKPROXY_ variable as a configuration key."""
        env = {name: value for name, value in os.environ.items() if not name.startswith("RKPROXY_")}
        with open(self.config + ".log", "ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "--config", self.config], env=env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"rkproxy exited at start ({self.process.returncode}), see {self.config}.log")
            try:
                socket.create_connection(self.address, timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"rkproxy did not listen on {self.address} within {START_SECONDS} s")

    def stop(self):
        """SIGTERM (rkproxy closes idle connections and exits), SIGKILL if it has not within STOP_SECONDS."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_SECONDS)
        self.process = None

    def restart(self):
        """Stopped, then started again on the same port."""
        self.stop()
        self.start()
