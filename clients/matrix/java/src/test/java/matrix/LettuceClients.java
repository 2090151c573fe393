package matrix;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.lettuce.core.ClientOptions;
import io.lettuce.core.RedisClient;
import io.lettuce.core.RedisURI;
import io.lettuce.core.api.StatefulConnection;
import io.lettuce.core.api.StatefulRedisConnection;
import io.lettuce.core.api.sync.RedisCommands;
import io.lettuce.core.codec.RedisCodec;
import io.lettuce.core.codec.StringCodec;
import io.lettuce.core.output.StatusOutput;
import io.lettuce.core.protocol.CommandArgs;
import io.lettuce.core.protocol.ProtocolKeyword;
import io.lettuce.core.protocol.ProtocolVersion;
import io.lettuce.core.pubsub.StatefulRedisPubSubConnection;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.AfterEachCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * The Lettuce clients of the Lettuce suites (LettuceTest, LettuceMoreTest, RestartTest): a
 * RedisClient per protocol, one way to connect to a target, and the connections of a test closed
 * after it. A JUnit extension: a test class registers it as a static field with
 * {@code @RegisterExtension}, and the clients are shut down after the class.
 */
final class LettuceClients implements AfterEachCallback, AfterAllCallback {
    /** A command Lettuce has no method for (`USE`, `KPUSH`, ...). */
    record Raw(String name) implements ProtocolKeyword {
        @Override
        public byte[] getBytes() {
            return name.getBytes(StandardCharsets.UTF_8);
        }

        @Override
        public String toString() {
            return name;
        }
    }

    private final RedisClient resp2 = RedisClient.create();
    private final RedisClient resp3 = RedisClient.create();
    private final List<StatefulConnection<?, ?>> made = new ArrayList<>();

    LettuceClients() {
        resp2.setOptions(ClientOptions.builder().protocolVersion(ProtocolVersion.RESP2).build());
        resp3.setOptions(ClientOptions.builder().protocolVersion(ProtocolVersion.RESP3).build());
    }

    RedisClient client(int protocol) {
        return protocol == 3 ? resp3 : resp2;
    }

    static RedisURI uri(Targets.Settings settings, String name, int db) {
        RedisURI.Builder builder = RedisURI.Builder.redis(settings.host(), settings.port()).withDatabase(db);
        if (settings.password() != null) {
            builder.withPassword((CharSequence) settings.password());
        }
        if (name != null) {
            builder.withClientName(name);
        }
        return builder.build();
    }

    static RedisURI uri(Targets.Settings settings) {
        return uri(settings, null, 0);
    }

    /** Connects with `uri`, then sends `USE` for the target's pool (Lettuce would not repeat it after a reconnect). */
    <K, V> StatefulRedisConnection<K, V> connect(RedisCodec<K, V> codec, String target, int protocol, RedisURI uri) {
        StatefulRedisConnection<K, V> connection = track(client(protocol).connect(codec, uri));
        String pool = Targets.settings(target).pool();
        if (pool != null) {
            assertEquals("OK", use(connection.sync(), codec, pool));
        }
        return connection;
    }

    <K, V> StatefulRedisConnection<K, V> connect(RedisCodec<K, V> codec, String target, int protocol, String name, int db) {
        return connect(codec, target, protocol, uri(Targets.settings(target), name, db));
    }

    RedisCommands<String, String> sync(String target, int protocol) {
        return connect(StringCodec.UTF8, target, protocol, null, 0).sync();
    }

    /** A pub/sub connection, `USE`d to the target's pool. */
    StatefulRedisPubSubConnection<String, String> connectPubSub(String target, int protocol) {
        Targets.Settings settings = Targets.settings(target);
        StatefulRedisPubSubConnection<String, String> subscriber = track(client(protocol).connectPubSub(uri(settings)));
        if (settings.pool() != null) {
            assertEquals("OK", use(subscriber.sync(), StringCodec.UTF8, settings.pool()));
        }
        return subscriber;
    }

    static <K, V> String use(RedisCommands<K, V> commands, RedisCodec<K, V> codec, String pool) {
        return commands.dispatch(new Raw("USE"), new StatusOutput<>(codec), new CommandArgs<>(codec).add(pool));
    }

    /** Closes `connection` after the test. */
    <T extends StatefulConnection<?, ?>> T track(T connection) {
        made.add(connection);
        return connection;
    }

    void closeConnections() {
        made.forEach(StatefulConnection::close);
        made.clear();
    }

    @Override
    public void afterEach(ExtensionContext context) {
        closeConnections();
    }

    @Override
    public void afterAll(ExtensionContext context) {
        closeConnections();
        resp2.shutdown(Duration.ZERO, Duration.ofSeconds(2));
        resp3.shutdown(Duration.ZERO, Duration.ofSeconds(2));
    }
}
