package matrix;

import java.io.File;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

/**
 * A rkproxy process of this suite's own, to restart under a client's pool. `cargo xtask clients`
 * writes its configuration (the key-prefixed tenant on the standalone pool, allowed to `USE
 * cluster`, on a port no other suite uses) and passes RKPROXY_CLIENTS_RESTART_BINARY,
 * _RESTART_CONFIG and _RESTART_PROXY. Every wait here is bounded.
 */
final class ProxyProcess implements AutoCloseable {
    private static final Duration START = Duration.ofSeconds(30);
    private static final Duration STOP = Duration.ofSeconds(15);

    private final String binary = required("RKPROXY_CLIENTS_RESTART_BINARY");
    private final String config = required("RKPROXY_CLIENTS_RESTART_CONFIG");
    private final Targets.Settings address = Targets.settings("restart");
    private Process process;

    private static String required(String name) {
        String value = System.getenv(name);
        if (value == null) {
            throw new IllegalStateException(name + " is not set (run through `cargo xtask clients`)");
        }
        return value;
    }

    /**
     * Starts rkproxy without the suite's RKPROXY_* variables (rkproxy reads every RKPROXY_
     * variable as a configuration key) and waits until it accepts connections.
     */
    void start() throws IOException, InterruptedException {
        ProcessBuilder builder = new ProcessBuilder(binary, "--config", config);
        builder.environment().keySet().removeIf(name -> name.startsWith("RKPROXY_"));
        File log = new File(config + ".log");
        builder.redirectOutput(ProcessBuilder.Redirect.appendTo(log));
        builder.redirectError(ProcessBuilder.Redirect.appendTo(log));
        process = builder.start();
        long deadline = System.nanoTime() + START.toNanos();
        while (System.nanoTime() < deadline) {
            if (!process.isAlive()) {
                throw new IllegalStateException("rkproxy exited at start (" + process.exitValue() + "), see " + log);
            }
            try (Socket socket = new Socket()) {
                socket.connect(new InetSocketAddress(address.host(), address.port()), 200);
                return;
            } catch (IOException notYet) {
                Thread.sleep(50);
            }
        }
        throw new IllegalStateException("rkproxy did not listen on port " + address.port() + " within " + START);
    }

    /** SIGTERM (rkproxy closes idle connections and exits), SIGKILL if it has not within STOP. */
    void stop() throws InterruptedException {
        if (process == null) {
            return;
        }
        process.destroy();
        if (!process.waitFor(STOP.toMillis(), TimeUnit.MILLISECONDS)) {
            process.destroyForcibly().waitFor(STOP.toMillis(), TimeUnit.MILLISECONDS);
        }
        process = null;
    }

    /** Stopped, then started again on the same port. */
    void restart() throws IOException, InterruptedException {
        stop();
        start();
    }

    @Override
    public void close() throws InterruptedException {
        stop();
    }
}
