package invalid.example.rkproxy.kafka;

import redis.clients.jedis.CommandArguments;
import redis.clients.jedis.Connection;
import redis.clients.jedis.ConnectionFactory;
import redis.clients.jedis.HostAndPort;
import redis.clients.jedis.JedisClientConfig;

/**
 * Makes Jedis connections that are on an rkproxy pool: after Jedis's own handshake (HELLO, AUTH,
 * SELECT, CLIENT SETINFO, from the client config) it sends {@code USE pool}. {@code USE} holds for
 * one connection only; Jedis's connection pool makes new connections on its own (more load, a
 * broken connection replaced), and each of them goes through here.
 */
public class UsePoolConnectionFactory extends ConnectionFactory {
  private final String pool;

  public UsePoolConnectionFactory(HostAndPort address, JedisClientConfig config, String pool) {
    super(address, config);
    this.pool = pool;
  }

  @Override
  protected void initialize(Connection connection) {
    super.initialize(connection);
    connection.executeCommand(new CommandArguments(KafkaCommand.USE).add(pool));
  }
}
