package invalid.example.rkproxy.kafka;

import java.util.Optional;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import redis.clients.jedis.exceptions.JedisDataException;

/**
 * An error Kafka reported through rkproxy ({@code ERR kafka OFFSET_OUT_OF_RANGE: ...}). Other
 * refusals of the K* commands (an unknown topic, a permission, a wrong partition) stay Jedis's
 * {@link JedisDataException}.
 */
public class KafkaException extends JedisDataException {
  // rkproxy writes Kafka's errors as `kafka NAME: details`, alone (`ERR kafka NAME: ...`) or inside
  // a pool error (`ERR kafka pool 'p' unavailable: kafka NAME: ...`).
  private static final Pattern KAFKA_ERROR_NAME =
      Pattern.compile("(?:^|\\s)kafka ([A-Z][A-Z0-9_]*): ");

  private final String kafkaErrorName;

  public KafkaException(String kafkaErrorName, String message, Throwable cause) {
    super(message, cause);
    this.kafkaErrorName = kafkaErrorName;
  }

  /** Kafka's error name: OFFSET_OUT_OF_RANGE, BROKER_NOT_AVAILABLE, REQUEST_TIMED_OUT, ... */
  public String kafkaErrorName() {
    return kafkaErrorName;
  }

  /** The KafkaException for an error reply that carries a Kafka error name. */
  static Optional<KafkaException> of(JedisDataException error) {
    String message = error.getMessage() == null ? "" : error.getMessage();
    Matcher found = KAFKA_ERROR_NAME.matcher(message);
    if (!found.find()) {
      return Optional.empty();
    }
    return Optional.of(new KafkaException(found.group(1), message, error));
  }
}
