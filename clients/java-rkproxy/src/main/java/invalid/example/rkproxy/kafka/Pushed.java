package invalid.example.rkproxy.kafka;

/** Where KPUSH wrote a record, once Kafka acknowledged it. */
public record Pushed(int partition, long offset) {}
