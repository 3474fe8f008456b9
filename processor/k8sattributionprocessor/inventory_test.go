package k8sattributionprocessor

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"go.opentelemetry.io/collector/component"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/agenttrail/agenttrail/internal/k8sinventory"
)

func TestInventoryConfig(t *testing.T) {
	cfg, err := loadConfig(t, component.MustNewIDWithName("k8sattribution", "inventory"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Inventory == nil || cfg.Inventory.String() != "k8s_inventory" {
		t.Errorf("inventory = %v", cfg.Inventory)
	}
	_, err = loadConfig(t, component.MustNewIDWithName("k8sattribution", "inventory_passthrough"))
	if err == nil || !strings.Contains(err.Error(), `"inventory" is for the agent`) {
		t.Errorf("inventory with passthrough: %v", err)
	}
}

// TestAttachDetach: a watcher on shared informers feeds its index from them and, once detached,
// no longer does, while the informers run on for others.
func TestAttachDetach(t *testing.T) {
	client := fake.NewClientset(newPod("ns", "a", "uid-a", "node-1", withContainer("c", "img", cid("a"))))
	inf, err := k8sinventory.New(client, "", 0, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	index := newPodIndex("", nil, nil, nil)
	w, err := attachKubeWatcher(inf, true, index, zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	w.run(ctx, &wg) // shared: the owner runs them, run does not
	inf.Run(ctx, &wg)
	defer wg.Wait()
	defer cancel()
	known := func(c string) bool { return index.lookup(c, "", time.Now()) != nil }
	eventually(t, 5*time.Second, "pod a indexed", func() bool { return known(cid("a")) })
	w.detach()
	if _, err := client.CoreV1().Pods("ns").Create(ctx, newPod("ns", "b", "uid-b", "node-1", withContainer("c", "img", cid("b"))), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "pod b in the shared informer", func() bool {
		_, ok, _ := inf.Pods.GetStore().GetByKey("ns/b")
		return ok
	})
	time.Sleep(50 * time.Millisecond)
	if known(cid("b")) {
		t.Error("a detached watcher still indexes pods")
	}
}
