package matrix;

import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.params.provider.Arguments;

/**
 * What the Java suites share: the targets `cargo xtask clients` passes in the environment (see
 * clients/matrix/python/conftest.py for the variables) and unique key names.
 */
final class Targets {
    private Targets() {}

    static final String KAFKA_TOPIC = System.getenv("RKPROXY_CLIENTS_KAFKA_TOPIC");
    static final String TENANT_PREFIX = System.getenv("RKPROXY_CLIENTS_TENANT_PREFIX");
    private static final SecureRandom RANDOM = new SecureRandom();

    /** Where a target is, its password, and the pool to `USE` after connecting (or null). */
    record Settings(String host, int port, String password, String pool) {}

    /**
     * The settings of a target. Besides the matrix's targets: `restart` is the tenant on the
     * suite's own restartable proxy ({@link ProxyProcess}), `restart-cluster` the same with `USE
     * cluster`, and `redis` the standalone Redis without any proxy.
     */
    static Settings settings(String target) {
        String password = System.getenv("RKPROXY_CLIENTS_TENANT_PASSWORD");
        if (target.equals("tenant")) {
            String[] address = address("RKPROXY_CLIENTS_TENANT_PROXY");
            return new Settings(address[0], Integer.parseInt(address[1]), password, null);
        }
        if (target.equals("restart") || target.equals("restart-cluster")) {
            String[] address = address("RKPROXY_CLIENTS_RESTART_PROXY");
            return new Settings(address[0], Integer.parseInt(address[1]), password,
                    target.equals("restart") ? null : "cluster");
        }
        if (target.equals("redis")) {
            String[] address = address("RKPROXY_CLIENTS_REDIS");
            return new Settings(address[0], Integer.parseInt(address[1]), null, null);
        }
        String[] address = address("RKPROXY_CLIENTS_PROXY");
        String pool = Map.of("standalone", "", "cluster", "cluster", "kafka", "kafka").get(target);
        return new Settings(address[0], Integer.parseInt(address[1]), null, pool.isEmpty() ? null : pool);
    }

    static String[] address(String name) {
        String value = System.getenv(name);
        if (value == null) {
            throw new IllegalStateException(name + " is not set (run through `cargo xtask clients`)");
        }
        int split = value.lastIndexOf(':');
        return new String[] {value.substring(0, split), value.substring(split + 1)};
    }

    /** Every target with RESP2 and RESP3, for @MethodSource. */
    static Stream<Arguments> matrix() {
        List<Arguments> all = new ArrayList<>();
        for (String target : List.of("standalone", "cluster", "tenant")) {
            for (int protocol : List.of(2, 3)) {
                all.add(Arguments.of(target, protocol));
            }
        }
        return all.stream();
    }

    /** Unique key names for one test. */
    static final class Keys {
        private final String token;

        Keys(String language) {
            byte[] bytes = new byte[6];
            RANDOM.nextBytes(bytes);
            token = language + ":" + HexFormat.of().formatHex(bytes);
        }

        String key(String suffix) {
            return token + ":" + suffix;
        }

        /** Names that share one hash tag (one cluster slot). */
        String tagged(String suffix) {
            return "{" + token + "}:" + suffix;
        }
    }

    /** `CLIENT INFO`'s `field=value` line as a map. */
    static Map<String, String> clientInfo(String line) {
        Map<String, String> fields = new java.util.HashMap<>();
        for (String pair : line.trim().split(" ")) {
            int split = pair.indexOf('=');
            if (split > 0) {
                fields.put(pair.substring(0, split), pair.substring(split + 1));
            }
        }
        return fields;
    }
}
