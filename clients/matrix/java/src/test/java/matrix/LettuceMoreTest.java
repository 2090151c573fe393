package matrix;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.lettuce.core.Consumer;
import io.lettuce.core.Range;
import io.lettuce.core.RedisClient;
import io.lettuce.core.RedisCommandExecutionException;
import io.lettuce.core.RedisConnectionException;
import io.lettuce.core.RedisException;
import io.lettuce.core.RedisURI;
import io.lettuce.core.StreamMessage;
import io.lettuce.core.TrackingArgs;
import io.lettuce.core.XReadArgs;
import io.lettuce.core.XReadArgs.StreamOffset;
import io.lettuce.core.api.StatefulRedisConnection;
import io.lettuce.core.api.sync.RedisCommands;
import io.lettuce.core.codec.StringCodec;
import io.lettuce.core.output.StatusOutput;
import io.lettuce.core.protocol.CommandArgs;
import io.lettuce.core.pubsub.RedisPubSubAdapter;
import io.lettuce.core.pubsub.StatefulRedisPubSubConnection;
import io.lettuce.core.support.AsyncConnectionPoolSupport;
import io.lettuce.core.support.BoundedAsyncPool;
import io.lettuce.core.support.BoundedPoolConfig;
import io.lettuce.core.support.caching.CacheAccessor;
import io.lettuce.core.support.caching.ClientSideCaching;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Lettuce through rkproxy: streams with a consumer group, PSUBSCRIBE, every form of AUTH, its
 * bounded async connection pool after AUTH, and client-side caching (refused by the proxy). The
 * pool after a proxy restart is in RestartTest.
 */
class LettuceMoreTest {
    private static final String TENANT_USER = System.getenv("RKPROXY_CLIENTS_TENANT_USER");
    @RegisterExtension
    static final LettuceClients lettuce = new LettuceClients();

    private static RedisClient client(int protocol) {
        return lettuce.client(protocol);
    }

    private static RedisURI uri(Targets.Settings settings) {
        return LettuceClients.uri(settings);
    }

    private static StatefulRedisConnection<String, String> connect(String target, int protocol, RedisURI uri) {
        return lettuce.connect(StringCodec.UTF8, target, protocol, uri);
    }

    private static RedisCommands<String, String> sync(String target, int protocol) {
        return lettuce.sync(target, protocol);
    }

    @ParameterizedTest(name = "{0} RESP{1}")
    @MethodSource("matrix.Targets#matrix")
    void streamsWithAConsumerGroup(String target, int protocol) {
        Targets.Keys k = new Targets.Keys("lettuce");
        RedisCommands<String, String> r = sync(target, protocol);
        String stream = k.tagged("stream");
        String first = r.xadd(stream, Map.of("field", "one"));
        String second = r.xadd(stream, Map.of("field", "two"));
        List<StreamMessage<String, String>> entries = r.xrange(stream, Range.create("-", "+"));
        assertEquals(List.of(first, second), entries.stream().map(StreamMessage::getId).toList());
        assertEquals(Map.of("field", "two"), entries.get(1).getBody());
        List<StreamMessage<String, String>> read = r.xread(XReadArgs.Builder.count(10), StreamOffset.from(stream, first));
        assertEquals(List.of(stream + " " + second), read.stream().map(m -> m.getStream() + " " + m.getId()).toList());
        assertEquals("OK", r.xgroupCreate(StreamOffset.from(stream, "0"), "workers"));
        List<StreamMessage<String, String>> delivered = r.xreadgroup(Consumer.from("workers", "alice"),
                XReadArgs.Builder.count(10), StreamOffset.lastConsumed(stream));
        assertEquals(List.of(first, second), delivered.stream().map(StreamMessage::getId).toList());
        assertEquals(2, r.xpending(stream, "workers").getCount());
        assertEquals(2, r.xack(stream, "workers", first, second));
        assertEquals(0, r.xpending(stream, "workers").getCount());
        assertEquals(1, r.del(stream));
    }

    @ParameterizedTest(name = "{0} RESP{1}")
    @MethodSource("matrix.Targets#matrix")
    void psubscribeThenNormalCommands(String target, int protocol) throws Exception {
        Targets.Keys k = new Targets.Keys("lettuce");
        RedisCommands<String, String> publisher = sync(target, protocol);
        StatefulRedisPubSubConnection<String, String> subscriber = lettuce.connectPubSub(target, protocol);
        LinkedBlockingQueue<String> received = new LinkedBlockingQueue<>();
        subscriber.addListener(new RedisPubSubAdapter<>() {
            @Override
            public void message(String pattern, String channel, String message) {
                received.add(pattern + " " + channel + " " + message);
            }

            @Override
            public void punsubscribed(String pattern, long count) {
                received.add("punsubscribed " + pattern + " " + count);
            }
        });
        String pattern = k.key("news") + ".*";
        String channel = k.key("news") + ".sport";
        subscriber.sync().psubscribe(pattern);
        // As for SUBSCRIBE: on the cluster pool PUBLISH counts only the node's own receivers.
        long receivers = publisher.publish(channel, "goal");
        assertTrue(receivers == 1 || (target.equals("cluster") && receivers == 0));
        assertEquals(pattern + " " + channel + " goal", received.poll(5, TimeUnit.SECONDS));
        subscriber.sync().punsubscribe(pattern);
        // As after UNSUBSCRIBE: wait until Lettuce has seen the confirmation (see LettuceTest).
        assertEquals("punsubscribed " + pattern + " 0", received.poll(5, TimeUnit.SECONDS));
        assertEquals("OK", subscriber.sync().set(k.key("after"), "back"));
        assertEquals("back", subscriber.sync().get(k.key("after")));
        assertEquals(1, subscriber.sync().del(k.key("after")));
    }

    /** What `client` writes lands under the tenant's prefix. */
    private void assertOnTenant(RedisCommands<String, String> client, int protocol) {
        Targets.Keys k = new Targets.Keys("lettuce");
        RedisCommands<String, String> untenanted = sync("standalone", protocol);
        assertEquals("OK", client.set(k.key("auth"), "mine"));
        assertEquals("mine", untenanted.get(Targets.TENANT_PREFIX + k.key("auth")));
        assertEquals(1, client.del(k.key("auth")));
    }

    @ParameterizedTest(name = "tenant RESP{0}")
    @ValueSource(ints = {2, 3})
    void authInEveryForm(int protocol) {
        Targets.Settings tenant = Targets.settings("tenant");
        assertOnTenant(sync("tenant", protocol), protocol);
        RedisURI withUser = RedisURI.Builder.redis(tenant.host(), tenant.port())
                .withAuthentication(TENANT_USER, (CharSequence) tenant.password()).build();
        assertOnTenant(connect("tenant", protocol, withUser).sync(), protocol);
        for (String user : List.of(TENANT_USER, "")) {
            RedisURI fromUrl = RedisURI.create("redis://" + user + ":" + tenant.password() + "@" + tenant.host() + ":"
                    + tenant.port());
            assertOnTenant(connect("tenant", protocol, fromUrl).sync(), protocol);
        }
        if (protocol == 2) {
            // Connected without credentials on RESP2 (no HELLO), then an explicit AUTH command.
            RedisCommands<String, String> later =
                    connect("tenant", 2, RedisURI.Builder.redis(tenant.host(), tenant.port()).build()).sync();
            RedisCommandExecutionException noauth = assertThrows(RedisCommandExecutionException.class, () -> later.get("x"));
            assertTrue(noauth.getMessage().contains("NOAUTH"), noauth.getMessage());
            assertEquals("OK", later.auth(TENANT_USER, tenant.password()));
            assertOnTenant(later, 2);
        }
        RedisURI wrong = RedisURI.Builder.redis(tenant.host(), tenant.port())
                .withPassword((CharSequence) "wrong-password").build();
        RedisConnectionException refused = assertThrows(RedisConnectionException.class, () -> client(protocol).connect(wrong));
        StringBuilder messages = new StringBuilder();
        for (Throwable cause = refused; cause != null; cause = cause.getCause()) {
            messages.append(cause.getMessage()).append(" / ");
        }
        assertTrue(messages.toString().contains("WRONGPASS"), messages.toString());
    }

    /** The targets where a pooled connection needs something at connect: AUTH, or `USE`. */
    static java.util.stream.Stream<org.junit.jupiter.params.provider.Arguments> poolTargets() {
        return Targets.matrix().filter(arguments -> !arguments.get()[0].equals("standalone"));
    }

    @ParameterizedTest(name = "{0} RESP{1}")
    @MethodSource("poolTargets")
    void poolAfterAuth(String target, int protocol) throws Exception {
        Targets.Settings settings = Targets.settings(target);
        Targets.Keys k = new Targets.Keys("lettuce");
        // Each new pooled connection: the client's AUTH (tenant), then `USE` (cluster) before use.
        BoundedAsyncPool<StatefulRedisConnection<String, String>> pool = AsyncConnectionPoolSupport.createBoundedObjectPool(
                () -> client(protocol).connectAsync(StringCodec.UTF8, uri(settings)).thenCompose(connection ->
                        settings.pool() == null
                                ? java.util.concurrent.CompletableFuture.completedFuture(connection)
                                : connection.async().dispatch(new LettuceClients.Raw("USE"), new StatusOutput<>(StringCodec.UTF8),
                                        new CommandArgs<>(StringCodec.UTF8).add(settings.pool())).thenApply(ok -> connection)),
                BoundedPoolConfig.builder().maxTotal(8).build());
        try {
            List<StatefulRedisConnection<String, String>> leased = new ArrayList<>();
            Set<Long> ids = new HashSet<>();
            List<String> names = new ArrayList<>();
            for (int index = 0; index < 6; index++) {
                StatefulRedisConnection<String, String> connection = pool.acquire().get(10, TimeUnit.SECONDS);
                leased.add(connection);
                names.add(k.key("pooled" + index));
                assertEquals("OK", connection.sync().set(k.key("pooled" + index), "v"));
                ids.add(connection.sync().clientId());
            }
            assertEquals(6, ids.size(), "the pool handed out the same connection twice");
            RedisCommands<String, String> standalone = sync("standalone", protocol);
            if (target.equals("tenant")) {
                assertEquals(6, standalone.exists(names.stream().map(name -> Targets.TENANT_PREFIX + name).toArray(String[]::new)));
            } else {
                assertEquals(0, standalone.exists(names.toArray(String[]::new)));
            }
            assertEquals(6, leased.get(0).sync().del(names.toArray(String[]::new)));
            for (StatefulRedisConnection<String, String> connection : leased) {
                pool.release(connection).get(10, TimeUnit.SECONDS);
            }
        } finally {
            pool.closeAsync().get(10, TimeUnit.SECONDS);
        }
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"standalone", "tenant"})
    void clientSideCachingIsRefused(String target) {
        // Lettuce's ClientSideCaching sends CLIENT TRACKING ON (RESP3); the proxy refuses it and
        // enable() raises that error rather than hanging or serving stale values.
        StatefulRedisConnection<String, String> connection = connect(target, 3, uri(Targets.settings(target)));
        RedisException refused = assertThrows(RedisException.class, () ->
                ClientSideCaching.enable(CacheAccessor.forMap(new HashMap<String, String>()), connection,
                        TrackingArgs.Builder.enabled()));
        StringBuilder messages = new StringBuilder();
        for (Throwable cause = refused; cause != null; cause = cause.getCause()) {
            messages.append(cause.getMessage()).append(" / ");
        }
        assertTrue(messages.toString().contains("CLIENT TRACKING is not supported by rkproxy"), messages.toString());
        assertEquals("PONG", connection.sync().ping());
    }
}
