package invalid.example.rkproxy.kafka;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import redis.clients.jedis.HostAndPort;
import redis.clients.jedis.JedisClientConfig;
import redis.clients.jedis.UnifiedJedis;
import redis.clients.jedis.exceptions.JedisDataException;
import redis.clients.jedis.providers.PooledConnectionProvider;

/**
 * rkproxy's Kafka commands (KPUSH, KPOP, KPARTITIONS, KOFFSET) with typed results, over a Jedis
 * {@link UnifiedJedis} that is on a Kafka pool.
 *
 * <pre>{@code
 * JedisClientConfig config = DefaultJedisClientConfig.builder().user("app1").password("secret").build();
 * try (RkproxyKafka kafka = RkproxyKafka.connect(new HostAndPort("127.0.0.1", 7480), config, "events")) {
 *   Pushed pushed = kafka.kpush("orders", "order 1".getBytes(StandardCharsets.UTF_8));
 *   Optional<KafkaRecord> record = kafka.kpop("orders", pushed.partition(), pushed.offset());
 * }
 * }</pre>
 */
public class RkproxyKafka implements AutoCloseable {
  /** KOFFSET time for the offset after the last record. */
  public static final long LATEST = -1;
  /** KOFFSET time for the earliest offset Kafka still keeps. */
  public static final long EARLIEST = -2;

  private final UnifiedJedis jedis;

  /** Wraps a client that is already on a Kafka pool (its tenant's default pool, for example). */
  public RkproxyKafka(UnifiedJedis jedis) {
    this.jedis = jedis;
  }

  /**
   * A pooled client whose every connection is switched to {@code pool} (see {@link
   * UsePoolConnectionFactory}); a command that meets a broken connection is tried again on a new
   * one, up to 3 times within 10 s.
   */
  public static RkproxyKafka connect(HostAndPort address, JedisClientConfig config, String pool) {
    PooledConnectionProvider provider =
        new PooledConnectionProvider(new UsePoolConnectionFactory(address, config, pool));
    return new RkproxyKafka(new UnifiedJedis(provider, 3, Duration.ofSeconds(10)));
  }

  /** The Jedis client the commands go through. */
  public UnifiedJedis jedis() {
    return jedis;
  }

  /** Writes {@code value} to {@code topic}; the proxy picks the partition round-robin. */
  public Pushed kpush(String topic, byte[] value) {
    return pushed(call(KafkaCommand.KPUSH, bytes(topic), value));
  }

  /** Writes {@code value} to {@code topic}'s {@code partition}. */
  public Pushed kpush(String topic, byte[] value, int partition) {
    return pushed(call(KafkaCommand.KPUSH, bytes(topic), bytes(partition), value));
  }

  /**
   * The next record of {@code topic} for this tenant (offsets kept by the proxy: each record once
   * per consumer group), or empty when nothing is new.
   */
  public Optional<KafkaRecord> kpop(String topic) {
    return Optional.ofNullable(record(call(KafkaCommand.KPOP, bytes(topic))));
  }

  /** The record at or after {@code offset} in {@code partition}, or empty. */
  public Optional<KafkaRecord> kpop(String topic, int partition, long offset) {
    Object reply = call(KafkaCommand.KPOP, bytes(topic), bytes(partition), bytes(offset));
    return Optional.ofNullable(record(reply));
  }

  /** Up to {@code count} records at or after {@code offset} in {@code partition}. */
  public List<KafkaRecord> kpop(String topic, int partition, long offset, int count) {
    Object reply =
        call(KafkaCommand.KPOP, bytes(topic), bytes(partition), bytes(offset), bytes(count));
    List<KafkaRecord> records = new ArrayList<>();
    for (Object item : list(reply, -1)) {
      records.add(record(item));
    }
    return records;
  }

  /** The topic's partition ids. */
  public List<Integer> kpartitions(String topic) {
    List<Integer> partitions = new ArrayList<>();
    for (Object item : list(call(KafkaCommand.KPARTITIONS, bytes(topic)), -1)) {
      partitions.add(Math.toIntExact(integer(item)));
    }
    return partitions;
  }

  /** The first offset at or after {@code time} (ms), or the {@link #LATEST} / {@link #EARLIEST}. */
  public OffsetAt koffset(String topic, int partition, long time) {
    List<?> items = list(call(KafkaCommand.KOFFSET, bytes(topic), bytes(partition), bytes(time)), 2);
    return new OffsetAt(integer(items.get(0)), integer(items.get(1)));
  }

  @Override
  public void close() {
    jedis.close();
  }

  private Object call(KafkaCommand command, byte[]... args) {
    try {
      return jedis.sendCommand(command, args);
    } catch (JedisDataException error) {
      Optional<KafkaException> kafkaError = KafkaException.of(error);
      if (kafkaError.isPresent()) {
        throw kafkaError.get();
      }
      throw error;
    }
  }

  private static Pushed pushed(Object reply) {
    List<?> items = list(reply, 2);
    return new Pushed(Math.toIntExact(integer(items.get(0))), integer(items.get(1)));
  }

  private static KafkaRecord record(Object reply) {
    if (reply == null) {
      return null;
    }
    List<?> items = list(reply, 3);
    Object value = items.get(2);
    if (value != null && !(value instanceof byte[])) {
      throw unexpected(reply);
    }
    return new KafkaRecord(
        Math.toIntExact(integer(items.get(0))), integer(items.get(1)), (byte[]) value);
  }

  private static List<?> list(Object reply, int size) {
    if (!(reply instanceof List<?> items) || (size >= 0 && items.size() != size)) {
      throw unexpected(reply);
    }
    return items;
  }

  private static long integer(Object reply) {
    if (!(reply instanceof Long number)) {
      throw unexpected(reply);
    }
    return number;
  }

  private static IllegalStateException unexpected(Object reply) {
    return new IllegalStateException("rkproxy-kafka: unexpected reply " + reply);
  }

  private static byte[] bytes(String text) {
    return text.getBytes(StandardCharsets.UTF_8);
  }

  private static byte[] bytes(long number) {
    return Long.toString(number).getBytes(StandardCharsets.US_ASCII);
  }
}
