package rkproxy_test

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	rkproxy "example.invalid/rkproxy/clients/go-rkproxy"
)

// A tenant whose default pool is a Redis pool reaches the Kafka pool `events` with USE, on every
// connection go-redis opens.
func Example() {
	ctx := context.Background()
	kafka, rdb := rkproxy.NewClient(&redis.Options{
		Addr:     "127.0.0.1:7480",
		Username: "app1",
		Password: "app1-secret",
	}, "events")
	defer rdb.Close()

	pushed, err := kafka.KPush(ctx, "orders", []byte("order 1"))
	if err != nil {
		panic(err)
	}
	record, err := kafka.KPopAt(ctx, "orders", pushed.Partition, pushed.Offset)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%d/%d: %s\n", record.Partition, record.Offset, record.Value)
	next, err := kafka.KPop(ctx, "orders") // nil when nothing is new for this tenant
	if err != nil {
		panic(err)
	}
	fmt.Println(next != nil)
}
