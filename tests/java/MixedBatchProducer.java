// Sends records to one partition in a single batch (linger), some of them keyless,
// with the Apache Kafka Java producer, and prints each record's outcome as a JSON
// line: {"index": i, "error": "<exception class or null>", "message": "..."}.
//
// Usage: MixedBatchProducer BOOTSTRAP TOPIC KEYS
//   KEYS: one character per record, 'k' for a keyed record, '-' for a keyless one.

import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;

public class MixedBatchProducer {
    static String quote(String s) {
        if (s == null) {
            return "null";
        }
        return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }

    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        props.put("linger.ms", "500");
        props.put("batch.size", "1048576");
        props.put("retries", "0");
        props.put("key.serializer", "org.apache.kafka.common.serialization.StringSerializer");
        props.put("value.serializer", "org.apache.kafka.common.serialization.StringSerializer");
        String keys = args[2];
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            List<Future<RecordMetadata>> sent = new ArrayList<>();
            for (int i = 0; i < keys.length(); i++) {
                String key = keys.charAt(i) == 'k' ? "customer-" + i : null;
                sent.add(producer.send(new ProducerRecord<>(args[1], 0, key, "value-" + i)));
            }
            producer.flush();
            for (int i = 0; i < sent.size(); i++) {
                String error = null;
                String message = null;
                try {
                    sent.get(i).get();
                } catch (ExecutionException e) {
                    error = e.getCause().getClass().getName();
                    message = e.getCause().getMessage();
                }
                System.out.println("{\"index\": " + i + ", \"error\": " + quote(error)
                    + ", \"message\": " + quote(message) + "}");
            }
        }
    }
}
