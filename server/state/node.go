package state

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// NodeStatus is the last status a node reported.
type NodeStatus struct {
	// Node is the node's name; it identifies the record.
	Node string `json:"node"`
	// State is what the node is doing, for example installing or idle.
	State string `json:"state"`
	// Image is the image the node runs or is installing.
	Image string `json:"image,omitempty"`
	// Version is the version of Image.
	Version int `json:"version,omitempty"`
	// Updated is when the status was reported.
	Updated time.Time `json:"updated"`
	// Message is free text from the node.
	Message string `json:"message,omitempty"`
	// BootID is the node's kernel boot ID, which changes on every boot.
	BootID string `json:"boot_id,omitempty"`
	// Kernel is the running kernel release.
	Kernel string `json:"kernel,omitempty"`
	// Stage is the install stage the node last reported (an api.Stage*
	// constant).
	Stage string `json:"stage,omitempty"`
	// Percent is the install's progress by bytes, 0 to 100.
	Percent float64 `json:"percent,omitempty"`
	// Rate is the transfer rate last reported, in bytes per second.
	Rate float64 `json:"rate,omitempty"`
	// ETA is the expected time left in the transfer, in seconds.
	ETA float64 `json:"eta_seconds,omitempty"`
	// Hostname is the host name the installed system reported.
	Hostname string `json:"hostname,omitempty"`
	// LocalBoot records that an install finished but the node's boot
	// action could not be set to local in goldcast.yaml (the node is
	// declared by a host range entry, say): the node should boot from
	// its disk all the same. A new install clears it.
	LocalBoot bool `json:"local_boot,omitempty"`
}

// PutNodeStatus stores st as the status of st.Node, replacing the previous
// one.
func (s *Store) PutNodeStatus(st NodeStatus) error {
	if st.Node == "" {
		return fmt.Errorf("store node status: node name is empty")
	}
	err := s.update(func(tx *bolt.Tx) error {
		return putJSON(tx.Bucket([]byte(bucketNodes)), []byte(st.Node), &st)
	})
	if err != nil {
		return fmt.Errorf("store status of node %q: %w", st.Node, err)
	}
	return nil
}

// UpdateNodeStatus changes the status of node name in one transaction:
// fn gets the current record (with Node set and found false when there is
// none) and changes it in place; when fn returns false nothing is written.
// It returns the record as stored (or as fn left it when not written).
func (s *Store) UpdateNodeStatus(name string, fn func(st *NodeStatus, found bool) bool) (NodeStatus, error) {
	if name == "" {
		return NodeStatus{}, fmt.Errorf("update node status: node name is empty")
	}
	var st NodeStatus
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketNodes))
		st = NodeStatus{}
		found, err := getJSON(b, []byte(name), &st)
		if err != nil {
			return err
		}
		st.Node = name
		if !fn(&st, found) {
			return nil
		}
		st.Node = name
		return putJSON(b, []byte(name), &st)
	})
	if err != nil {
		return NodeStatus{}, fmt.Errorf("update status of node %q: %w", name, err)
	}
	return st, nil
}

// NodeStatus returns the status of node name, or an error wrapping
// ErrNotFound if it never reported one.
func (s *Store) NodeStatus(name string) (*NodeStatus, error) {
	var st NodeStatus
	err := s.view(func(tx *bolt.Tx) error {
		found, err := getJSON(tx.Bucket([]byte(bucketNodes)), []byte(name), &st)
		if err != nil {
			return err
		}
		if !found {
			return ErrNotFound
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("status of node %q: %w", name, err)
	}
	return &st, nil
}

// NodeStatuses returns the status of every node, sorted by name.
func (s *Store) NodeStatuses() ([]NodeStatus, error) {
	var out []NodeStatus
	err := s.view(func(tx *bolt.Tx) error {
		// bbolt keeps keys in byte order, which is string order.
		return tx.Bucket([]byte(bucketNodes)).ForEach(func(k, v []byte) error {
			var st NodeStatus
			if err := decodeJSON(k, v, &st); err != nil {
				return err
			}
			out = append(out, st)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list node statuses: %w", err)
	}
	return out, nil
}
