package invalid.example.rkproxy.kafka;

/** KOFFSET's answer: the offset, and the record's timestamp in ms (-1 when Kafka gives none). */
public record OffsetAt(long offset, long timestamp) {}
