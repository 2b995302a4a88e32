// Apache Iceberg's REST catalog, as Iceberg's own tests serve it, for Ferry's iceberg tests
// (cli/tests/iceberg_rest.rs). Started by scripts/dev-env in Java's source-file mode:
//
//   java -cp "$ICEBERG_REST_LIBS/*" scripts/IcebergRestServer.java HOST PORT WAREHOUSE
//
// The protocol is Iceberg 1.10's reference implementation: RESTCatalogServlet and
// RESTCatalogAdapter (iceberg-core's test jar; the same pair iceberg-open-api's
// RESTCatalogServer fixture runs) in front of a JdbcCatalog on an in-memory SQLite database.
// What differs from that fixture's main: it binds HOST only (the fixture binds every
// interface), and it needs no Hadoop (the fixture's main creates a Hadoop Configuration).
//
// Table metadata files go to an InMemoryFileIO: clients get the metadata in the responses
// and write their data files, manifests and manifest lists themselves, at the table
// location they ask for (or WAREHOUSE/namespace/table). So everything is gone when the
// process stops, and a table's metadata is never on disk.
import java.net.InetSocketAddress;
import java.util.HashMap;
import java.util.Map;
import org.apache.iceberg.CatalogUtil;
import org.apache.iceberg.catalog.Catalog;
import org.apache.iceberg.rest.RESTCatalogAdapter;
import org.apache.iceberg.rest.RESTCatalogServlet;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.servlet.ServletContextHandler;
import org.eclipse.jetty.servlet.ServletHolder;

public class IcebergRestServer {
  public static void main(String[] args) throws Exception {
    if (args.length != 3) {
      System.err.println("usage: IcebergRestServer HOST PORT WAREHOUSE");
      System.exit(2);
    }
    String host = args[0];
    int port = Integer.parseInt(args[1]);
    Map<String, String> props = new HashMap<>();
    props.put(CatalogUtil.ICEBERG_CATALOG_TYPE, "jdbc");
    props.put("uri", "jdbc:sqlite::memory:");
    // One connection: each connection to :memory: is a database of its own.
    props.put("clients", "1");
    props.put("jdbc.schema-version", "V1");
    props.put("warehouse", args[2]);
    props.put("io-impl", "org.apache.iceberg.inmemory.InMemoryFileIO");
    Catalog catalog = CatalogUtil.buildIcebergCatalog("rest_backend", props, null);

    ServletContextHandler context = new ServletContextHandler(ServletContextHandler.NO_SESSIONS);
    context.addServlet(new ServletHolder(new RESTCatalogServlet(new RESTCatalogAdapter(catalog))), "/*");
    Server server = new Server(new InetSocketAddress(host, port));
    server.setHandler(context);
    server.setStopAtShutdown(true);
    server.start();
    System.err.println("Iceberg REST catalog on http://" + host + ":" + port + " (warehouse " + args[2] + ")");
    server.join();
  }
}
