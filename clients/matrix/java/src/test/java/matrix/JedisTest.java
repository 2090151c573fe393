package matrix;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import redis.clients.jedis.Jedis;
import redis.clients.jedis.JedisPubSub;
import redis.clients.jedis.Pipeline;
import redis.clients.jedis.Response;
import redis.clients.jedis.Transaction;
import redis.clients.jedis.params.ScanParams;
import redis.clients.jedis.resps.ScanResult;
import redis.clients.jedis.resps.Tuple;

/** Jedis through rkproxy in plain (non-cluster) mode: every target, RESP2 and RESP3. */
class JedisTest {
    @RegisterExtension
    final JedisClients clients = new JedisClients();

    private Jedis connect(String target, int protocol, String name, int db) {
        return clients.connect(target, JedisClients.config(protocol)
                .password(Targets.settings(target).password())
                .clientName(name)
                .database(db));
    }

    private Jedis connect(String target, int protocol) {
        return connect(target, protocol, null, 0);
    }

    private static String text(Object reply) {
        return JedisClients.text(reply);
    }

    @ParameterizedTest(name = "{0} RESP{1}")
    @MethodSource("matrix.Targets#matrix")
    void connectHandshake(String target, int protocol) {
        Jedis r = connect(target, protocol, "matrix-jedis", 0);
        assertEquals("PONG", r.ping());
        assertEquals("matrix-jedis", r.clientGetname());
        Map<String, String> info = Targets.clientInfo(r.clientInfo());
        assertEquals("jedis", info.get("lib-name"));
        assertEquals(String.valueOf(protocol), info.get("resp"));
        assertTrue(r.info("server").contains("redis_mode:standalone"));
    }

    @Test
    void connectWithDatabaseSelects() {
        Targets.Keys keys = new Targets.Keys("jedis");
        Jedis inDb3 = connect("standalone", 2, null, 3);
        Jedis inDb0 = connect("standalone", 2);
        assertEquals("OK", inDb3.set(keys.key("selected"), "three"));
        assertEquals("three", inDb3.get(keys.key("selected")));
        assertNull(inDb0.get(keys.key("selected")));
        assertEquals(1, inDb3.del(keys.key("selected")));
    }

    @ParameterizedTest(name = "{0} RESP{1}")
    @MethodSource("matrix.Targets#matrix")
    void dataTypes(String target, int protocol) {
        Targets.Keys k = new Targets.Keys("jedis");
        Jedis r = connect(target, protocol);
        assertEquals("OK", r.set(k.key("s"), "10"));
        assertEquals(15, r.incrBy(k.key("s"), 5));
        assertEquals(3, r.append(k.key("s"), "x"));
        assertEquals("15x", r.get(k.key("s")));
        assertEquals(2, r.hset(k.key("h"), Map.of("a", "1", "b", "2")));
        assertEquals(42, r.hincrBy(k.key("h"), "a", 41));
        assertEquals(Map.of("a", "42", "b", "2"), r.hgetAll(k.key("h")));
        assertEquals(2, r.rpush(k.key("l"), "b", "c"));
        assertEquals(3, r.lpush(k.key("l"), "a"));
        assertEquals(List.of("a", "b", "c"), r.lrange(k.key("l"), 0, -1));
        assertEquals(3, r.sadd(k.tagged("x"), "a", "b", "c"));
        assertEquals(3, r.sadd(k.tagged("y"), "b", "c", "d"));
        assertEquals(Set.of("b", "c"), r.sinter(k.tagged("x"), k.tagged("y")));
        assertEquals(3, r.zadd(k.key("z"), Map.of("a", 1.0, "b", 2.5, "c", 3.0)));
        assertEquals(11.0, r.zincrby(k.key("z"), 10, "a"));
        List<Tuple> ranked = r.zrangeWithScores(k.key("z"), 0, -1);
        assertEquals(List.of("b", "c", "a"), ranked.stream().map(Tuple::getElement).toList());
        assertEquals(List.of(2.5, 3.0, 11.0), ranked.stream().map(Tuple::getScore).toList());
        assertEquals(6, r.del(k.key("s"), k.key("h"), k.key("l"), k.tagged("x"), k.tagged("y"), k.key("z")));
    }

    @ParameterizedTest(name = "{0} RESP{1}")
    @MethodSource("matrix.Targets#matrix")
    void binaryEmptyAndOneMegabyte(String target, int protocol) {
        Targets.Keys k = new Targets.Keys("jedis");
        Jedis r = connect(target, protocol);
        byte[] binary = new byte[259];
        for (int index = 0; index < 256; index++) {
            binary[index] = (byte) index;
        }
        binary[256] = '\r';
        binary[257] = '\n';
        byte[] binaryKey = (k.key("bin") + "\0\r\n").getBytes(StandardCharsets.UTF_8);
        assertEquals("OK", r.set(binaryKey, binary));
        assertArrayEquals(binary, r.get(binaryKey));
        assertEquals("OK", r.set(k.key("empty"), ""));
        assertEquals("", r.get(k.key("empty")));
        byte[] big = new byte[1 << 20];
        new Random().nextBytes(big);
        byte[] bigKey = k.key("big").getBytes(StandardCharsets.UTF_8);
        assertEquals("OK", r.set(bigKey, big));
        assertArrayEquals(big, r.get(bigKey));
        assertEquals(3, r.del(binaryKey, k.key("empty").getBytes(StandardCharsets.UTF_8), bigKey));
    }

    @ParameterizedTest(name = "{0} RESP{1}")
    @MethodSource("matrix.Targets#matrix")
    void pipelineOf1000(String target, int protocol) {
        Targets.Keys k = new Targets.Keys("jedis");
        Jedis r = connect(target, protocol);
        Pipeline writes = r.pipelined();
        List<Response<String>> written = new ArrayList<>();
        for (int index = 0; index < 1000; index++) {
            written.add(writes.set(k.key("p" + index), "value-" + index));
        }
        writes.sync();
        written.forEach(response -> assertEquals("OK", response.get()));
        Pipeline reads = r.pipelined();
        List<Response<String>> read = new ArrayList<>();
        for (int index = 0; index < 1000; index++) {
            read.add(reads.get(k.key("p" + index)));
        }
        reads.sync();
        for (int index = 0; index < 1000; index++) {
            assertEquals("value-" + index, read.get(index).get());
        }
        String[] names = IntStream.range(0, 1000).mapToObj(index -> k.key("p" + index)).toArray(String[]::new);
        assertEquals(1000, r.del(names));
    }

    @ParameterizedTest(name = "{0} RESP{1}")
    @MethodSource("matrix.Targets#matrix")
    void crossSlotAndScan(String target, int protocol) {
        Targets.Keys k = new Targets.Keys("jedis");
        Jedis r = connect(target, protocol);
        List<String> pairs = new ArrayList<>();
        List<String> names = new ArrayList<>();
        for (int index = 0; index < 150; index++) {
            names.add(k.key("m" + index));
            pairs.add(k.key("m" + index));
            pairs.add("v" + index);
        }
        assertEquals("OK", r.mset(pairs.toArray(String[]::new)));
        List<String> values = r.mget(names.subList(0, 20).toArray(String[]::new));
        assertEquals(IntStream.range(0, 20).mapToObj(index -> "v" + index).toList(), values);
        Set<String> found = new HashSet<>();
        String cursor = ScanParams.SCAN_POINTER_START;
        ScanParams params = new ScanParams().match(k.key("m*")).count(20);
        for (int round = 0; round < 10_000; round++) {
            ScanResult<String> page = r.scan(cursor, params);
            found.addAll(page.getResult());
            cursor = page.getCursor();
            if (page.isCompleteIteration()) {
                break;
            }
        }
        assertEquals("0", cursor);
        assertEquals(new HashSet<>(names), found);
        assertEquals(150, r.exists(names.toArray(String[]::new)));
        assertEquals(150, r.del(names.toArray(String[]::new)));
    }

    @ParameterizedTest(name = "{0} RESP{1}")
    @MethodSource("matrix.Targets#matrix")
    void multiAndWatch(String target, int protocol) {
        Targets.Keys k = new Targets.Keys("jedis");
        Jedis r = connect(target, protocol);
        Jedis other = connect(target, protocol);
        Transaction transaction = r.multi();
        transaction.set(k.tagged("a"), "1");
        transaction.incr(k.tagged("a"));
        transaction.rpush(k.tagged("b"), "x", "y");
        assertEquals(List.of("OK", 2L, 2L), transaction.exec());
        assertEquals("OK", r.watch(k.tagged("a")));
        assertEquals("2", r.get(k.tagged("a")));
        assertEquals("OK", other.set(k.tagged("a"), "changed"));
        Transaction aborted = r.multi();
        aborted.set(k.tagged("a"), "mine");
        assertNull(aborted.exec());
        assertEquals("changed", r.get(k.tagged("a")));
        assertEquals("OK", r.watch(k.tagged("a")));
        Transaction unchanged = r.multi();
        unchanged.set(k.tagged("a"), "mine");
        assertEquals(List.of("OK"), unchanged.exec());
        assertEquals("mine", r.get(k.tagged("a")));
        assertEquals(2, r.del(k.tagged("a"), k.tagged("b")));
    }

    @ParameterizedTest(name = "{0} RESP{1}")
    @MethodSource("matrix.Targets#matrix")
    void blpopWithTimeout(String target, int protocol) {
        Targets.Keys k = new Targets.Keys("jedis");
        Jedis r = connect(target, protocol);
        long started = System.nanoTime();
        assertNull(r.blpop(0.3, k.tagged("empty")));
        assertTrue(System.nanoTime() - started >= 250_000_000L);
        assertEquals(1, r.rpush(k.tagged("queue"), "job"));
        var popped = r.blpop(1.0, k.tagged("empty"), k.tagged("queue"));
        assertEquals(k.tagged("queue"), popped.getKey());
        assertEquals("job", popped.getValue());
        assertEquals("OK", r.set(k.key("after"), "normal"));
        assertEquals(1, r.del(k.key("after")));
    }

    @ParameterizedTest(name = "{0} RESP{1}")
    @MethodSource("matrix.Targets#matrix")
    void subscribeThenNormalCommands(String target, int protocol) throws Exception {
        Targets.Keys k = new Targets.Keys("jedis");
        Jedis publisher = connect(target, protocol);
        Jedis subscriber = connect(target, protocol);
        String channel = k.key("channel");
        List<String> received = new ArrayList<>();
        JedisPubSub listener = new JedisPubSub() {
            @Override
            public void onSubscribe(String subscribed, int count) {
                // Redis Cluster counts only the node's own subscribers, so on the cluster pool 0 is
                // possible; the message still arrives.
                long receivers = publisher.publish(channel, "hello");
                assertTrue(receivers == 1 || (target.equals("cluster") && receivers == 0));
            }

            @Override
            public void onMessage(String from, String message) {
                received.add(from + " " + message);
                unsubscribe();
            }
        };
        subscriber.subscribe(listener, channel);
        assertEquals(List.of(channel + " hello"), received);
        // subscribe() returns once nothing is subscribed: the same connection serves commands again.
        assertEquals("OK", subscriber.set(k.key("after"), "back"));
        assertEquals("back", subscriber.get(k.key("after")));
        assertEquals(1, subscriber.del(k.key("after")));
    }

    @ParameterizedTest(name = "{0} RESP{1}")
    @MethodSource("matrix.Targets#matrix")
    void eval(String target, int protocol) {
        Targets.Keys k = new Targets.Keys("jedis");
        Jedis r = connect(target, protocol);
        String script = "redis.call('SET', KEYS[1], ARGV[1]); return {redis.call('GET', KEYS[1]), #ARGV}";
        assertEquals(List.of("scripted", 2L), r.eval(script, 1, k.key("e"), "scripted", "extra"));
        assertEquals("scripted", r.get(k.key("e")));
        assertEquals(1, r.del(k.key("e")));
    }

    @ParameterizedTest(name = "RESP{0}")
    @org.junit.jupiter.params.provider.ValueSource(ints = {2, 3})
    void tenantKeysCarryThePrefix(int protocol) {
        Targets.Keys k = new Targets.Keys("jedis");
        Jedis r = connect("tenant", protocol);
        Jedis untenanted = connect("standalone", protocol);
        assertEquals("OK", r.set(k.key("mine"), "tenant-value"));
        assertEquals("tenant-value", untenanted.get(Targets.TENANT_PREFIX + k.key("mine")));
        assertNull(untenanted.get(k.key("mine")));
        assertEquals(1, r.del(k.key("mine")));
    }

    @ParameterizedTest(name = "kafka RESP{0}")
    @org.junit.jupiter.params.provider.ValueSource(ints = {2, 3})
    @org.junit.jupiter.api.Tag("kafka")
    void kpushKpopByPartitionAndOffset(int protocol) {
        Jedis r = connect("kafka", protocol);
        String topic = Targets.KAFKA_TOPIC;
        assertEquals(List.of(0L, 1L), ((List<?>) r.sendCommand(new JedisClients.Raw("KPARTITIONS"), topic)).stream().sorted().toList());
        byte[] value = new byte[19];
        new Random().nextBytes(value);
        value[0] = 0;
        List<?> pushed = (List<?>) r.sendCommand(new JedisClients.Raw("KPUSH"), topic.getBytes(StandardCharsets.UTF_8),
                "1".getBytes(StandardCharsets.UTF_8), value);
        assertEquals(1L, pushed.get(0));
        long offset = (Long) pushed.get(1);
        List<?> record = (List<?>) r.sendCommand(new JedisClients.Raw("KPOP"), topic, "1", String.valueOf(offset));
        assertEquals(1L, record.get(0));
        assertEquals(offset, record.get(1));
        assertArrayEquals(value, (byte[]) record.get(2));
    }
}
