package matrix;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.extension.AfterEachCallback;
import org.junit.jupiter.api.extension.ExtensionContext;
import redis.clients.jedis.DefaultJedisClientConfig;
import redis.clients.jedis.HostAndPort;
import redis.clients.jedis.Jedis;
import redis.clients.jedis.RedisProtocol;
import redis.clients.jedis.commands.ProtocolCommand;

/**
 * The Jedis connections of the Jedis suites (JedisTest, JedisMoreTest, RestartTest): one way to
 * connect to a target, and everything made is closed after each test: a JUnit extension that a
 * test class registers as a field with {@code @RegisterExtension}.
 */
final class JedisClients implements AfterEachCallback {
    /** A command Jedis has no method for (`USE`, `KPUSH`, ...). */
    record Raw(String name) implements ProtocolCommand {
        @Override
        public byte[] getRaw() {
            return name.getBytes(StandardCharsets.UTF_8);
        }
    }

    private final List<AutoCloseable> made = new ArrayList<>();

    /** The matrix's client settings: the protocol and a 10 s socket timeout. */
    static DefaultJedisClientConfig.Builder config(int protocol) {
        return DefaultJedisClientConfig.builder()
                .protocol(protocol == 3 ? RedisProtocol.RESP3 : RedisProtocol.RESP2)
                .socketTimeoutMillis(10_000);
    }

    /** Connects; Jedis is one connection, so `USE` after connecting holds until it reconnects. */
    Jedis connect(String target, DefaultJedisClientConfig.Builder config) {
        Targets.Settings settings = Targets.settings(target);
        Jedis jedis = track(new Jedis(new HostAndPort(settings.host(), settings.port()), config.build()));
        if (settings.pool() != null) {
            assertEquals("OK", text(jedis.sendCommand(new Raw("USE"), settings.pool())));
        }
        return jedis;
    }

    /** Connects with the target's password. */
    Jedis connect(String target, int protocol) {
        return connect(target, config(protocol).password(Targets.settings(target).password()));
    }

    /** Closes `closable` after the test. */
    <T extends AutoCloseable> T track(T closable) {
        made.add(closable);
        return closable;
    }

    @Override
    public void afterEach(ExtensionContext context) throws Exception {
        closeAll();
    }

    void closeAll() throws Exception {
        for (AutoCloseable closable : made) {
            closable.close();
        }
        made.clear();
    }

    static String text(Object reply) {
        return reply instanceof byte[] bytes ? new String(bytes, StandardCharsets.UTF_8) : String.valueOf(reply);
    }
}
