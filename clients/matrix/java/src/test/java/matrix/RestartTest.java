package matrix;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.lettuce.core.RedisURI;
import io.lettuce.core.api.StatefulRedisConnection;
import io.lettuce.core.api.sync.RedisCommands;
import io.lettuce.core.codec.StringCodec;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.Callable;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import redis.clients.jedis.HostAndPort;
import redis.clients.jedis.Jedis;
import redis.clients.jedis.JedisPool;
import redis.clients.jedis.RedisClient;
import redis.clients.jedis.exceptions.JedisConnectionException;

/**
 * Jedis's pools (RedisClient, JedisPooled before Jedis 8, and JedisPool) and Lettuce when the proxy they talk to is restarted on the same port: the
 * suite's own proxy ({@link ProxyProcess}), so no other suite sees it. Each test writes before the
 * restart, restarts the proxy, waits (at most {@link #RECOVERY}) until the client serves again,
 * then checks where the keys written after the restart landed. What the clients do: a Jedis pool
 * hands out its idle connections as they are (no test on borrow by default), so a command on a
 * connection the proxy closed fails once and the broken connection is destroyed; new connections
 * carry the AUTH of the client's config. Lettuce reconnects its connection by itself, with AUTH
 * from the URI, queueing the commands meanwhile. Neither repeats a `USE` sent by hand, so after the
 * restart those keys are back on the tenant's default pool.
 */
class RestartTest {
    private static final Duration RECOVERY = Duration.ofSeconds(10);
    @RegisterExtension
    static final LettuceClients lettuce = new LettuceClients();
    @RegisterExtension
    final JedisClients jedis = new JedisClients();
    private final ProxyProcess proxy = new ProxyProcess();

    @BeforeEach
    void startProxy() throws Exception {
        proxy.start();
    }

    @AfterEach
    void stopProxy() throws Exception {
        proxy.stop();
    }

    /** Runs `command` until it succeeds, for at most RECOVERY; returns how often it failed first. */
    private static int failuresBeforeSuccess(Callable<?> command) throws Exception {
        long deadline = System.nanoTime() + RECOVERY.toNanos();
        int failures = 0;
        while (true) {
            try {
                command.call();
                return failures;
            } catch (JedisConnectionException | io.lettuce.core.RedisException error) {
                failures++;
                if (System.nanoTime() > deadline) {
                    throw new AssertionError("no success within " + RECOVERY + " after " + failures + " failures", error);
                }
                Thread.sleep(100);
            }
        }
    }

    /** Where `names` (each set to itself) landed: `redis` (the standalone Redis, under the tenant's prefix) or `cluster`. */
    private void assertLanded(List<String> names, String where, int protocol) {
        String[] prefixed = names.stream().map(name -> Targets.TENANT_PREFIX + name).toArray(String[]::new);
        Jedis direct = jedis.connect("redis", protocol);
        Jedis cluster = jedis.connect("cluster", protocol);
        List<String> expected = names;
        List<String> nothing = names.stream().map(name -> (String) null).toList();
        assertEquals(where.equals("redis") ? expected : nothing, direct.mget(prefixed));
        assertEquals(where.equals("cluster") ? expected : nothing, cluster.mget(prefixed));
        direct.del(prefixed);
        cluster.del(prefixed);
    }

    /** Four connections of `pool` held at once, a key SET on each; returns the keys. */
    private static List<String> setThroughFourHeld(JedisPool pool, Targets.Keys k, String label, String use) {
        List<Jedis> held = new ArrayList<>();
        List<String> names = new ArrayList<>();
        Set<Long> ids = new HashSet<>();
        try {
            for (int index = 0; index < 4; index++) {
                Jedis connection = pool.getResource();
                held.add(connection);
                if (use != null) {
                    assertEquals("OK", JedisClients.text(connection.sendCommand(new JedisClients.Raw("USE"), use)));
                }
                String name = k.key(label + index);
                assertEquals("OK", connection.set(name, name));
                ids.add(connection.clientId());
                names.add(name);
            }
        } finally {
            // A connection that failed is broken: close() destroys it rather than returning it.
            held.forEach(Jedis::close);
        }
        assertEquals(4, ids.size(), "the pool handed out the same connection twice");
        return names;
    }

    @ParameterizedTest(name = "RESP{0}")
    @ValueSource(ints = {2, 3})
    void jedisRedisClientAfterARestart(int protocol) throws Exception {
        Targets.Settings settings = Targets.settings("restart");
        Targets.Keys k = new Targets.Keys("jedis");
        // Jedis 8's pooled client (JedisPooled before).
        RedisClient pooled = jedis.track(RedisClient.builder()
                .hostAndPort(settings.host(), settings.port())
                .clientConfig(JedisClients.config(protocol).password(settings.password()).build())
                .build());
        assertEquals("OK", pooled.set(k.key("before"), k.key("before")));

        proxy.restart();

        // It retries nothing itself: its one idle connection fails once, then is replaced.
        int failures = failuresBeforeSuccess(() -> pooled.set(k.key("after"), k.key("after")));
        assertTrue(failures <= 1, failures + " failures");
        assertEquals(k.key("after"), pooled.get(k.key("after")));
        assertLanded(List.of(k.key("before"), k.key("after")), "redis", protocol);
    }

    @ParameterizedTest(name = "RESP{0}")
    @ValueSource(ints = {2, 3})
    void jedisPoolAfterARestart(int protocol) throws Exception {
        Targets.Settings settings = Targets.settings("restart");
        Targets.Keys k = new Targets.Keys("jedis");
        JedisPool pool = jedis.track(new JedisPool(new HostAndPort(settings.host(), settings.port()),
                JedisClients.config(protocol).password(settings.password()).build()));
        // `USE cluster` by hand on each borrowed connection: it holds for that connection only.
        assertLanded(setThroughFourHeld(pool, k, "before", "cluster"), "cluster", protocol);

        proxy.restart();

        // Each of the four idle connections fails once and is destroyed; new ones carry AUTH.
        List<List<String>> after = new ArrayList<>();
        int failures = failuresBeforeSuccess(() -> after.add(setThroughFourHeld(pool, k, "after", null)));
        assertTrue(failures <= 4, failures + " failures");
        assertLanded(after.get(0), "redis", protocol);
    }

    @ParameterizedTest(name = "RESP{0}")
    @ValueSource(ints = {2, 3})
    void lettuceAfterARestart(int protocol) throws Exception {
        Targets.Keys k = new Targets.Keys("lettuce");
        RedisURI uri = LettuceClients.uri(Targets.settings("restart-cluster"));
        uri.setTimeout(RECOVERY);
        StatefulRedisConnection<String, String> connection = lettuce.connect(StringCodec.UTF8, "restart-cluster", protocol, uri);
        RedisCommands<String, String> r = connection.sync();
        assertEquals("OK", r.set(k.key("before"), k.key("before")));
        assertLanded(List.of(k.key("before")), "cluster", protocol);

        proxy.restart();

        // Lettuce queues the command until it has reconnected (with AUTH, without the USE).
        int failures = failuresBeforeSuccess(() -> r.set(k.key("after"), k.key("after")));
        assertEquals(0, failures);
        assertEquals(k.key("after"), r.get(k.key("after")));
        assertLanded(List.of(k.key("after")), "redis", protocol);
    }
}
