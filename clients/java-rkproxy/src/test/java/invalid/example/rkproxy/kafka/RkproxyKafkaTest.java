package invalid.example.rkproxy.kafka;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.commons.pool2.impl.GenericObjectPoolConfig;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import redis.clients.jedis.Connection;
import redis.clients.jedis.DefaultJedisClientConfig;
import redis.clients.jedis.HostAndPort;
import redis.clients.jedis.JedisClientConfig;
import redis.clients.jedis.RedisProtocol;
import redis.clients.jedis.UnifiedJedis;
import redis.clients.jedis.exceptions.JedisDataException;
import redis.clients.jedis.providers.PooledConnectionProvider;

/**
 * The helpers against a real rkproxy and Kafka broker, run by {@code cargo xtask clients}, which
 * passes RKPROXY_CLIENTS_HELPERS_* (see clients/python-rkproxy/tests/conftest.py for their meaning).
 */
@Timeout(60)
class RkproxyKafkaTest {
  private static String setting(String name) {
    String value = System.getenv("RKPROXY_CLIENTS_HELPERS_" + name);
    if (value == null || value.isEmpty()) {
      throw new IllegalStateException(
          "RKPROXY_CLIENTS_HELPERS_" + name + " is not set: run `cargo xtask clients`");
    }
    return value;
  }

  private static final HostAndPort PROXY = HostAndPort.from(setting("PROXY"));
  private static final String POOL = setting("POOL");
  private static final String DOWN_POOL = setting("DOWN_POOL");
  private static final String TOPIC = setting("TOPIC");

  private static JedisClientConfig config(RedisProtocol protocol) {
    return DefaultJedisClientConfig.builder()
        .user(setting("USER"))
        .password(setting("PASSWORD"))
        .protocol(protocol)
        .socketTimeoutMillis(10_000)
        .build();
  }

  private static byte[] bytes(String text) {
    return text.getBytes(StandardCharsets.UTF_8);
  }

  @ParameterizedTest
  @EnumSource(RedisProtocol.class)
  void kpushThenKpopByPartitionAndOffset(RedisProtocol protocol) {
    try (RkproxyKafka kafka = RkproxyKafka.connect(PROXY, config(protocol), POOL)) {
      byte[] value = bytes("java\0\u00ff\r\n" + UUID.randomUUID());
      Pushed pushed = kafka.kpush(TOPIC, value, 1);
      assertEquals(1, pushed.partition());
      assertTrue(pushed.offset() >= 0);
      assertEquals(
          Optional.of(new KafkaRecord(1, pushed.offset(), value)),
          kafka.kpop(TOPIC, 1, pushed.offset()));
      Pushed empty = kafka.kpush(TOPIC, new byte[0], 1);
      List<KafkaRecord> records = kafka.kpop(TOPIC, 1, pushed.offset(), 2);
      assertEquals(2, records.size());
      assertEquals(new KafkaRecord(1, pushed.offset(), value), records.get(0));
      assertArrayEquals(new byte[0], kafka.kpop(TOPIC, 1, empty.offset()).orElseThrow().value());
    }
  }

  @ParameterizedTest
  @EnumSource(RedisProtocol.class)
  void kpartitionsKoffsetAndKpopPastTheEnd(RedisProtocol protocol) {
    try (RkproxyKafka kafka = RkproxyKafka.connect(PROXY, config(protocol), POOL)) {
      assertEquals(List.of(0, 1), kafka.kpartitions(TOPIC));
      long before = System.currentTimeMillis() - 1;
      Pushed pushed = kafka.kpush(TOPIC, bytes("timed"));
      OffsetAt latest = kafka.koffset(TOPIC, pushed.partition(), RkproxyKafka.LATEST);
      assertTrue(latest.offset() > pushed.offset());
      assertEquals(-1, latest.timestamp());
      assertEquals(
          new OffsetAt(0, -1), kafka.koffset(TOPIC, pushed.partition(), RkproxyKafka.EARLIEST));
      OffsetAt atTime = kafka.koffset(TOPIC, pushed.partition(), before);
      assertTrue(atTime.offset() <= pushed.offset() && atTime.timestamp() >= before, atTime::toString);
      assertEquals(Optional.empty(), kafka.kpop(TOPIC, pushed.partition(), latest.offset() + 1000));
      assertEquals(List.of(), kafka.kpop(TOPIC, pushed.partition(), latest.offset() + 1000, 5));
    }
  }

  @Test
  void managedKpopGivesEachRecordOnce() {
    String topic = TOPIC + "-managed-java";
    try (RkproxyKafka kafka = RkproxyKafka.connect(PROXY, config(RedisProtocol.RESP3), POOL)) {
      Set<String> pushed = new HashSet<>();
      for (int index = 0; index < 3; index++) {
        String value = "managed-" + index + "-" + UUID.randomUUID();
        pushed.add(value);
        kafka.kpush(topic, bytes(value));
      }
      List<String> popped = new ArrayList<>();
      for (int attempt = 0; attempt < 50; attempt++) {
        Optional<KafkaRecord> record = kafka.kpop(topic);
        if (record.isEmpty()) {
          break;
        }
        popped.add(new String(record.get().value(), StandardCharsets.UTF_8));
      }
      assertEquals(pushed.size(), popped.size(), popped::toString);
      assertEquals(pushed, new HashSet<>(popped));
    }
  }

  @Test
  void kafkaErrorsAreKafkaExceptionsOthersStayJedisDataException() {
    try (RkproxyKafka down = RkproxyKafka.connect(PROXY, config(RedisProtocol.RESP2), DOWN_POOL);
        RkproxyKafka kafka = RkproxyKafka.connect(PROXY, config(RedisProtocol.RESP2), POOL)) {
      KafkaException error = assertThrows(KafkaException.class, () -> down.kpush(TOPIC, bytes("x")));
      assertEquals("BROKER_NOT_AVAILABLE", error.kafkaErrorName());
      assertInstanceOf(JedisDataException.class, error);
      assertEquals(
          "BROKER_NOT_AVAILABLE",
          assertThrows(KafkaException.class, () -> down.kpop(TOPIC)).kafkaErrorName());
      JedisDataException other =
          assertThrows(JedisDataException.class, () -> kafka.kpush("no-such-topic", bytes("x")));
      assertFalse(other instanceof KafkaException);
      assertTrue(other.getMessage().contains("unknown topic 'no-such-topic'"), other::getMessage);
    }
  }

  @ParameterizedTest
  @EnumSource(RedisProtocol.class)
  void aReconnectedClientIsAuthenticatedAndOnTheKafkaPoolAgain(RedisProtocol protocol)
      throws IOException {
    try (Relay relay = new Relay(PROXY);
        RkproxyKafka kafka = RkproxyKafka.connect(relay.address(), config(protocol), POOL)) {
      kafka.kpush(TOPIC, bytes("before the cut"), 0);
      relay.cutAll();
      // Jedis retries on a new pooled connection, which the factory put back on the Kafka pool.
      Pushed pushed = kafka.kpush(TOPIC, bytes("after the cut"), 0);
      assertEquals(
          Optional.of(new KafkaRecord(0, pushed.offset(), bytes("after the cut"))),
          kafka.kpop(TOPIC, 0, pushed.offset()));
      assertEquals(2, relay.accepted());
    }
  }

  @Test
  void withoutTheFactoryAReconnectedClientIsBackOnTheDefaultPool() throws IOException {
    GenericObjectPoolConfig<Connection> onlyOne = new GenericObjectPoolConfig<>();
    onlyOne.setMaxTotal(1);
    try (Relay relay = new Relay(PROXY);
        UnifiedJedis jedis =
            new UnifiedJedis(
                new PooledConnectionProvider(relay.address(), config(RedisProtocol.RESP2), onlyOne),
                3,
                Duration.ofSeconds(10))) {
      jedis.sendCommand(KafkaCommand.USE, bytes(POOL));
      RkproxyKafka kafka = new RkproxyKafka(jedis);
      kafka.kpush(TOPIC, bytes("before the cut"), 0);
      relay.cutAll();
      JedisDataException error =
          assertThrows(JedisDataException.class, () -> kafka.kpush(TOPIC, bytes("after"), 0));
      assertTrue(error.getMessage().contains("uses Redis pool"), error::getMessage);
    }
  }

  /** A TCP relay to the proxy whose connections the test can cut, as a network failure would. */
  static final class Relay implements AutoCloseable {
    private final ServerSocket listener;
    private final HostAndPort target;
    private final List<Socket> sockets = new ArrayList<>();
    private final AtomicInteger accepted = new AtomicInteger();

    Relay(HostAndPort target) throws IOException {
      this.target = target;
      this.listener = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
      Thread acceptor = new Thread(this::acceptLoop, "relay-accept");
      acceptor.setDaemon(true);
      acceptor.start();
    }

    HostAndPort address() {
      return new HostAndPort("127.0.0.1", listener.getLocalPort());
    }

    int accepted() {
      return accepted.get();
    }

    private void acceptLoop() {
      while (true) {
        try {
          Socket client = listener.accept();
          Socket upstream = new Socket(target.getHost(), target.getPort());
          accepted.incrementAndGet();
          synchronized (sockets) {
            sockets.add(client);
            sockets.add(upstream);
          }
          pump(client, upstream);
          pump(upstream, client);
        } catch (IOException closed) {
          return;
        }
      }
    }

    private static void pump(Socket from, Socket to) {
      Thread thread =
          new Thread(
              () -> {
                try (InputStream in = from.getInputStream(); OutputStream out = to.getOutputStream()) {
                  in.transferTo(out);
                } catch (IOException ignored) {
                  // The other side is gone; closing both ends below is all there is to do.
                }
                closeQuietly(from);
                closeQuietly(to);
              },
              "relay-pump");
      thread.setDaemon(true);
      thread.start();
    }

    void cutAll() {
      synchronized (sockets) {
        sockets.forEach(Relay::closeQuietly);
        sockets.clear();
      }
    }

    private static void closeQuietly(Socket socket) {
      try {
        socket.close();
      } catch (IOException ignored) {
        // Already closed.
      }
    }

    @Override
    public void close() throws IOException {
      listener.close();
      cutAll();
    }
  }
}
