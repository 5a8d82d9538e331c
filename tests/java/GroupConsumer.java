// A consumer-group member process for tests (the Apache Kafka Java client).
//
// Usage: GroupConsumer BOOTSTRAP GROUP TOPIC [config.key=value ...]
//
// Prints the same JSON lines as tests/group_member.py: assigned / revoked / lost
// (with the cooperative protocol these are the incremental changes), record, and
// committed after each record's synchronous commit. SIGTERM closes the consumer.

import java.time.Duration;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.stream.Collectors;

import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.WakeupException;

public class GroupConsumer {
    static synchronized void emit(String json) {
        System.out.println(json);
        System.out.flush();
    }

    static String partitions(Collection<TopicPartition> ps) {
        return ps.stream().map(TopicPartition::partition).sorted().map(String::valueOf)
            .collect(Collectors.joining(",", "[", "]"));
    }

    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        props.put("group.id", args[1]);
        props.put("auto.offset.reset", "earliest");
        props.put("enable.auto.commit", "false");
        props.put("session.timeout.ms", "6000");
        props.put("heartbeat.interval.ms", "500");
        props.put("key.deserializer", "org.apache.kafka.common.serialization.StringDeserializer");
        props.put("value.deserializer", "org.apache.kafka.common.serialization.StringDeserializer");
        for (int i = 3; i < args.length; i++) {
            String[] kv = args[i].split("=", 2);
            props.put(kv[0], kv[1]);
        }
        KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props);
        CountDownLatch closed = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            consumer.wakeup();
            try {
                closed.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }));
        consumer.subscribe(List.of(args[2]), new ConsumerRebalanceListener() {
            public void onPartitionsAssigned(Collection<TopicPartition> ps) {
                emit("{\"event\": \"assigned\", \"partitions\": " + partitions(ps) + "}");
            }
            public void onPartitionsRevoked(Collection<TopicPartition> ps) {
                emit("{\"event\": \"revoked\", \"partitions\": " + partitions(ps) + "}");
            }
            public void onPartitionsLost(Collection<TopicPartition> ps) {
                emit("{\"event\": \"lost\", \"partitions\": " + partitions(ps) + "}");
            }
        });
        emit("{\"event\": \"started\"}");
        try {
            while (true) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
                    emit("{\"event\": \"record\", \"partition\": " + r.partition() + ", \"offset\": "
                        + r.offset() + ", \"value\": \"" + r.value() + "\"}");
                    TopicPartition tp = new TopicPartition(r.topic(), r.partition());
                    try {
                        consumer.commitSync(Map.of(tp, new OffsetAndMetadata(r.offset() + 1)));
                        emit("{\"event\": \"committed\", \"partition\": " + r.partition()
                            + ", \"offset\": " + (r.offset() + 1) + "}");
                    } catch (KafkaException e) {
                        if (e instanceof WakeupException) {
                            throw e;
                        }
                        emit("{\"event\": \"commit_failed\", \"partition\": " + r.partition() + "}");
                    }
                }
            }
        } catch (WakeupException e) {
            // shutting down
        } finally {
            consumer.close();
            emit("{\"event\": \"closed\"}");
            closed.countDown();
        }
    }
}
