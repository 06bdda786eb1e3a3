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
