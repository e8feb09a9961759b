package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

func validateCommand(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "validate -c FILE",
		Short: "Check a config file: exit 0, or exit 1 with every problem, each with its YAML path and line",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := loadConfig(g, file)
			if err != nil {
				return err
			}
			var names []string
			for _, p := range f.Pipelines {
				names = append(names, p.Name)
			}
			fmt.Fprintf(g.stdout, "%s: ok (%d pipelines: %s)\n", file, len(names), strings.Join(names, ", "))
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", "", "config file (YAML)")
	return cmd
}
