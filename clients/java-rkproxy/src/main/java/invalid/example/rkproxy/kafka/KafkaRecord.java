package invalid.example.rkproxy.kafka;

import java.util.Arrays;

/**
 * A record read by KPOP. {@code value} is null for a Kafka tombstone; records compare by content.
 */
public record KafkaRecord(int partition, long offset, byte[] value) {
  @Override
  public boolean equals(Object other) {
    return other instanceof KafkaRecord record
        && partition == record.partition
        && offset == record.offset
        && Arrays.equals(value, record.value);
  }

  @Override
  public int hashCode() {
    return 31 * (31 * partition + Long.hashCode(offset)) + Arrays.hashCode(value);
  }

  @Override
  public String toString() {
    String shown = value == null ? "null" : value.length + " bytes";
    return "KafkaRecord[partition=" + partition + ", offset=" + offset + ", value=" + shown + "]";
  }
}
