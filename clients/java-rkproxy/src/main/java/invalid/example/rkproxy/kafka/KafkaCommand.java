package invalid.example.rkproxy.kafka;

import java.nio.charset.StandardCharsets;
import redis.clients.jedis.commands.ProtocolCommand;

/** The commands the helpers send: rkproxy's Kafka commands, and USE to pick a pool. */
public enum KafkaCommand implements ProtocolCommand {
  KPUSH,
  KPOP,
  KPARTITIONS,
  KOFFSET,
  USE;

  private final byte[] raw = name().getBytes(StandardCharsets.US_ASCII);

  @Override
  public byte[] getRaw() {
    return raw;
  }
}
