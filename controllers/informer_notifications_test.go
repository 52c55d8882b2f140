package controllers

import (
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// notify is one notification an informer gives its event handlers, for the
// table tests of the handlers that keep counts.
type notify func(toolscache.ResourceEventHandler)

func added(obj client.Object) notify {
	return func(h toolscache.ResourceEventHandler) { h.OnAdd(obj, false) }
}

func updated(before, after client.Object) notify {
	return func(h toolscache.ResourceEventHandler) { h.OnUpdate(before, after) }
}

func deleted(obj client.Object) notify {
	return func(h toolscache.ResourceEventHandler) { h.OnDelete(obj) }
}

// deletedUnseen is a delete the informer missed: a tombstone holding the last copy it had.
func deletedUnseen(obj client.Object) notify {
	return func(h toolscache.ResourceEventHandler) {
		h.OnDelete(toolscache.DeletedFinalStateUnknown{Key: obj.GetNamespace() + "/" + obj.GetName(), Obj: obj})
	}
}
