package sinks

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// CloudEvents attributes shared by every sink that sends CloudEvents.
const cloudEventsSpecVersion = "1.0"

// cloudEventType names the event kind for consumers to route on: ...subscribed,
// ...unsubscribed, and ...snapshot for a resync's listing.
func cloudEventType(action v1alpha1.Action) string {
	if action == v1alpha1.ActionSnapshot {
		return "dev.chat-operators.officialaccount.snapshot"
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
// already speak Tencent's protocol.
func tencentBody(event *v1alpha1.OfficialAccountSubscription) ([]byte, error) {
	type subscriber struct {
		SubscriberAccount string `json:"Subscriber_Account"`
	}
	body := struct {
		CallbackCommand      string       `json:"CallbackCommand"`
		OfficialAccount      string       `json:"Official_Account"`
		OperatorAccount      string       `json:"Operator_Account"`
		SubscribeAccountList []subscriber `json:"SubscribeAccountList"`
		EventTime            int64        `json:"EventTime"`
	}{
		CallbackCommand: event.Spec.CallbackCommand,
		OfficialAccount: event.Spec.OfficialAccount,
		OperatorAccount: event.Spec.OperatorAccount,
		EventTime:       event.Spec.EventTime,
	}
	for _, s := range event.Spec.Subscribers {
		body.SubscribeAccountList = append(body.SubscribeAccountList, subscriber{SubscriberAccount: s})
	}
	return json.Marshal(body)
}
