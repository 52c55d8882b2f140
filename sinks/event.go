package sinks

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// CloudEvents attributes shared by every sink that sends CloudEvents.
const cloudEventsSpecVersion = "1.0"

// cloudEventType names the event kind for consumers to route on: ...subscribed,
// ...unsubscribed, ...snapshot for a resync's listing, ...destroyed for an account that
// no longer exists.
func cloudEventType(action v1alpha1.Action) string {
	switch action {
	case v1alpha1.ActionSnapshot:
		return "dev.chat-operators.officialaccount.snapshot"
	case v1alpha1.ActionAccountDestroyed:
		return "dev.chat-operators.officialaccount.destroyed"
	}
	return "dev.chat-operators.officialaccount." + strings.ToLower(string(action)) + "d"
}

// cloudEventSource identifies the Chat app the event came from.
func cloudEventSource(sdkAppID string) string { return "/tencent-cloud-chat/" + sdkAppID }

// eventTime converts Tencent's milliseconds to a time.
func eventTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// cloudEventData is the event's data: the resource's spec, the same document that
// `kubectl get oasub -o yaml` shows.
func cloudEventData(event *v1alpha1.OfficialAccountSubscription) ([]byte, error) {
	return json.Marshal(event.Spec)
}

// tencentBody rebuilds the callback body as Tencent sent it, for destinations that
// already speak Tencent's protocol. A destroyed account's body has Owner_Account and Name
// instead of Operator_Account and SubscribeAccountList. A snapshot, which Tencent never
// sends, carries its place in the snapshot as Snapshot {ID, Part, Parts, SubscriberNum},
// so that a receiver can assemble the parts.
func tencentBody(event *v1alpha1.OfficialAccountSubscription) ([]byte, error) {
	spec := event.Spec
	if spec.Action == v1alpha1.ActionAccountDestroyed {
		return json.Marshal(struct {
			CallbackCommand string `json:"CallbackCommand"`
			OfficialAccount string `json:"Official_Account"`
			OwnerAccount    string `json:"Owner_Account"`
			Name            string `json:"Name"`
			EventTime       int64  `json:"EventTime"`
		}{spec.CallbackCommand, spec.OfficialAccount, spec.OwnerAccount, spec.AccountName, spec.EventTime})
	}
	type subscriber struct {
		SubscriberAccount string `json:"Subscriber_Account"`
	}
	type snapshot struct {
		ID            string `json:"ID"`
		Part          int32  `json:"Part"`
		Parts         int32  `json:"Parts"`
		SubscriberNum int32  `json:"SubscriberNum"`
	}
	body := struct {
		CallbackCommand      string       `json:"CallbackCommand"`
		OfficialAccount      string       `json:"Official_Account"`
		OperatorAccount      string       `json:"Operator_Account"`
		SubscribeAccountList []subscriber `json:"SubscribeAccountList"`
		EventTime            int64        `json:"EventTime"`
		Snapshot             *snapshot    `json:"Snapshot,omitempty"`
	}{
		CallbackCommand:      spec.CallbackCommand,
		OfficialAccount:      spec.OfficialAccount,
		OperatorAccount:      spec.OperatorAccount,
		SubscribeAccountList: []subscriber{},
		EventTime:            spec.EventTime,
	}
	for _, s := range spec.Subscribers {
		body.SubscribeAccountList = append(body.SubscribeAccountList, subscriber{SubscriberAccount: s})
	}
	if snap := spec.Snapshot; snap != nil {
		body.Snapshot = &snapshot{ID: snap.ID, Part: snap.Part, Parts: snap.Parts, SubscriberNum: snap.Subscribers}
	}
	return json.Marshal(body)
}

// cloudEventAttributes are the event's CloudEvents context attributes, as every sink kind
// carries them: HTTP headers (ce-), Kafka headers (ce_), fields of a structured event.
func cloudEventAttributes(event *v1alpha1.OfficialAccountSubscription) map[string]string {
	return map[string]string{
		"specversion": cloudEventsSpecVersion,
		"id":          event.Name,
		"source":      cloudEventSource(event.Spec.SDKAppID),
		"type":        cloudEventType(event.Spec.Action),
		"subject":     event.Spec.OfficialAccount,
		"time":        eventTime(event.Spec.EventTime).Format(time.RFC3339Nano),
	}
}

// extensionAttributes are the CloudEvents extension attributes of a delivery: a dead
// letter's (deadlettersink, deadletterreason, deadlettererror) and a replay's (replay).
func extensionAttributes(ctx context.Context) map[string]string {
	attrs := map[string]string{}
	if dl := DeadLetterFrom(ctx); dl != nil {
		for name, value := range dl.attributes() {
			attrs[name] = value
		}
	}
	if replay := ReplayFrom(ctx); replay != "" {
		attrs[replayAttribute] = replay
	}
	return attrs
}
