package matrix;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.URI;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;
import redis.clients.jedis.ClientSetInfoConfig;
import redis.clients.jedis.DefaultJedisClientConfig;
import redis.clients.jedis.HostAndPort;
import redis.clients.jedis.Jedis;
import redis.clients.jedis.JedisPool;
import redis.clients.jedis.JedisPubSub;
import redis.clients.jedis.RedisClient;
import redis.clients.jedis.StreamEntryID;
import redis.clients.jedis.csc.CacheConfig;
import redis.clients.jedis.exceptions.JedisAccessControlException;
import redis.clients.jedis.exceptions.JedisException;
import redis.clients.jedis.params.XReadGroupParams;
import redis.clients.jedis.params.XReadParams;
import redis.clients.jedis.resps.StreamEntry;

/**
 * Jedis through rkproxy: streams with a consumer group, PSUBSCRIBE, every form of AUTH, JedisPool
 * after AUTH, and client-side caching (refused by the proxy). The pool after a proxy restart is
 * in RestartTest.
 */
class JedisMoreTest {
    private static final String TENANT_USER = System.getenv("RKPROXY_CLIENTS_TENANT_USER");
    @RegisterExtension
    final JedisClients clients = new JedisClients();

    private static DefaultJedisClientConfig.Builder config(int protocol) {
        return JedisClients.config(protocol);
    }

    private Jedis connect(String target, int protocol, DefaultJedisClientConfig.Builder config) {
        return clients.connect(target, config);
    }

    private Jedis connect(String target, int protocol) {
        return clients.connect(target, protocol);
    }

    @ParameterizedTest(name = "{0} RESP{1}")
    @MethodSource("matrix.Targets#matrix")
    void streamsWithAConsumerGroup(String target, int protocol) {
        Targets.Keys k = new Targets.Keys("jedis");
        Jedis r = connect(target, protocol);
        String stream = k.tagged("stream");
        StreamEntryID first = r.xadd(stream, StreamEntryID.NEW_ENTRY, Map.of("field", "one"));
        StreamEntryID second = r.xadd(stream, StreamEntryID.NEW_ENTRY, Map.of("field", "two"));
        List<StreamEntry> entries = r.xrange(stream, (StreamEntryID) null, (StreamEntryID) null);
        assertEquals(List.of(first, second), entries.stream().map(StreamEntry::getID).toList());
        assertEquals(Map.of("field", "two"), entries.get(1).getFields());
        var read = r.xread(XReadParams.xReadParams().count(10), Map.of(stream, first));
        assertEquals(1, read.size());
        assertEquals(stream, read.get(0).getKey());
        assertEquals(List.of(second), read.get(0).getValue().stream().map(StreamEntry::getID).toList());
        assertEquals("OK", r.xgroupCreate(stream, "workers", new StreamEntryID(0, 0), false));
        var delivered = r.xreadGroup("workers", "alice", XReadGroupParams.xReadGroupParams().count(10),
                Map.of(stream, StreamEntryID.XREADGROUP_UNDELIVERED_ENTRY));
        assertEquals(List.of(first, second), delivered.get(0).getValue().stream().map(StreamEntry::getID).toList());
        assertEquals(2, r.xpending(stream, "workers").getTotal());
        assertEquals(2, r.xack(stream, "workers", first, second));
        assertEquals(0, r.xpending(stream, "workers").getTotal());
        assertEquals(1, r.del(stream));
    }

    @ParameterizedTest(name = "{0} RESP{1}")
    @MethodSource("matrix.Targets#matrix")
    void psubscribeThenNormalCommands(String target, int protocol) {
        Targets.Keys k = new Targets.Keys("jedis");
        Jedis publisher = connect(target, protocol);
        Jedis subscriber = connect(target, protocol);
        String pattern = k.key("news") + ".*";
        String channel = k.key("news") + ".sport";
        List<String> received = new ArrayList<>();
        JedisPubSub listener = new JedisPubSub() {
            @Override
            public void onPSubscribe(String subscribed, int count) {
                // As for SUBSCRIBE: on the cluster pool PUBLISH counts only the node's own receivers.
                long receivers = publisher.publish(channel, "goal");
                assertTrue(receivers == 1 || (target.equals("cluster") && receivers == 0));
            }

            @Override
            public void onPMessage(String matched, String from, String message) {
                received.add(matched + " " + from + " " + message);
                punsubscribe();
            }
        };
        subscriber.psubscribe(listener, pattern);
        assertEquals(List.of(pattern + " " + channel + " goal"), received);
        assertEquals("OK", subscriber.set(k.key("after"), "back"));
        assertEquals("back", subscriber.get(k.key("after")));
        assertEquals(1, subscriber.del(k.key("after")));
    }

    /** What `client` writes lands under the tenant's prefix. */
    private void assertOnTenant(redis.clients.jedis.commands.JedisCommands client, int protocol) {
        Targets.Keys k = new Targets.Keys("jedis");
        Jedis untenanted = connect("standalone", protocol);
        assertEquals("OK", client.set(k.key("auth"), "mine"));
        assertEquals("mine", untenanted.get(Targets.TENANT_PREFIX + k.key("auth")));
        assertEquals(1, client.del(k.key("auth")));
    }

    @ParameterizedTest(name = "tenant RESP{0}")
    @ValueSource(ints = {2, 3})
    void authInEveryForm(int protocol) {
        Targets.Settings tenant = Targets.settings("tenant");
        // Password only, and user name and password.
        assertOnTenant(connect("tenant", protocol), protocol);
        assertOnTenant(connect("tenant", protocol, config(protocol).user(TENANT_USER).password(tenant.password())), protocol);
        // At connect from a URI, with a user and with an empty one.
        for (String user : List.of(TENANT_USER, "")) {
            URI uri = URI.create("redis://" + user + ":" + tenant.password() + "@" + tenant.host() + ":" + tenant.port()
                    + "/0?protocol=" + protocol);
            Jedis fromUri = new Jedis(uri);
            clients.track(fromUri);
            assertOnTenant(fromUri, protocol);
        }
        // Connected without credentials (RESP2: no HELLO), then an explicit AUTH command.
        if (protocol == 2) {
            // Without a protocol set (Jedis then sends no HELLO 2) and without CLIENT SETINFO: before
            // AUTH both get NOAUTH (from Redis too), which Jedis raises from its constructor.
            Jedis later = connect("tenant", protocol, DefaultJedisClientConfig.builder()
                    .socketTimeoutMillis(10_000).clientSetInfoConfig(ClientSetInfoConfig.DISABLED));
            assertThrows(JedisException.class, () -> later.get("anything"));
            assertEquals("OK", later.auth(TENANT_USER, tenant.password()));
            assertOnTenant(later, protocol);
        }
        JedisException wrong = assertThrows(JedisException.class,
                () -> connect("tenant", protocol, config(protocol).password("wrong-password")).ping());
        assertTrue(String.valueOf(wrong.getMessage()).contains("WRONGPASS")
                || wrong instanceof JedisAccessControlException, wrong.toString());
    }

    @ParameterizedTest(name = "tenant RESP{0}")
    @ValueSource(ints = {2, 3})
    void poolAfterAuth(int protocol) {
        Targets.Settings tenant = Targets.settings("tenant");
        Targets.Keys k = new Targets.Keys("jedis");
        JedisPool pool = new JedisPool(new HostAndPort(tenant.host(), tenant.port()),
                config(protocol).user(TENANT_USER).password(tenant.password()).build());
        clients.track(pool);
        List<Jedis> leased = new ArrayList<>();
        Set<Long> ids = new HashSet<>();
        List<String> names = new ArrayList<>();
        for (int index = 0; index < 6; index++) {
            Jedis connection = pool.getResource();
            leased.add(connection);
            names.add(k.key("pooled" + index));
            assertEquals("OK", connection.set(k.key("pooled" + index), "v"));
            ids.add(connection.clientId());
        }
        leased.forEach(Jedis::close);
        assertEquals(6, ids.size(), "the pool handed out the same connection twice");
        Jedis untenanted = connect("standalone", protocol);
        assertEquals(6, untenanted.exists(names.stream().map(name -> Targets.TENANT_PREFIX + name).toArray(String[]::new)));
        try (Jedis again = pool.getResource()) {
            assertEquals(6, again.del(names.toArray(String[]::new)));
        }
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"standalone", "tenant"})
    void clientSideCachingFailsLoudly(String target) {
        // Jedis's cache (RESP3 only) sends CLIENT TRACKING ON on each new connection, which the
        // proxy refuses. Jedis first checks the server version from HELLO: below Redis 7.4 (the
        // test servers run 7.0, and the proxy reports its backend's version) it refuses by itself
        // and never sends CLIENT TRACKING. Either way the first command fails with the reason,
        // rather than hanging or serving stale values.
        Targets.Settings settings = Targets.settings(target);
        RedisClient cached = RedisClient.builder()
                .hostAndPort(settings.host(), settings.port())
                .clientConfig(config(3).password(settings.password()).build())
                .cacheConfig(CacheConfig.builder().maxSize(100).build())
                .build();
        clients.track(cached);
        JedisException refused = assertThrows(JedisException.class, () -> cached.get("anything"));
        StringBuilder messages = new StringBuilder();
        for (Throwable cause = refused; cause != null; cause = cause.getCause()) {
            messages.append(cause.getMessage()).append(" / ");
        }
        String reason = messages.toString();
        assertTrue(reason.contains("CLIENT TRACKING is not supported by rkproxy")
                || reason.contains("Client side caching is only supported with 'Redis 7.4' or later"), reason);
    }
}
